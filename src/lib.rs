//! faststyle: real-time neural style transfer (Johnson, Alahi, Fei-Fei 2016) on libtorch.
//!
//! The library holds the domain; the `train` and `infer` binaries hold only their command line.

pub mod checkpoint;
pub mod conditional;
pub mod data;
pub mod device;
pub mod dist;
pub mod fastconv;
pub mod fsutil;
pub mod fused;
pub mod gatys;
pub mod imageio;
pub mod interrupt;
pub mod locate;
pub mod loss;
pub mod optim;
pub mod progress;
pub mod sheet;
pub mod styles;
pub mod temporal;
pub mod tiled;
pub mod training;
pub mod transformer;
pub mod vgg;

/// Name and version of this program, recorded in the files it writes.
pub const CREATED_BY: &str = concat!("faststyle ", env!("CARGO_PKG_VERSION"));
