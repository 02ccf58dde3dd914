//! Choosing where the networks run (CPU or a CUDA device) and in which precision.
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::{nn, Device, Kind, Tensor};

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when available, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{s}` (expected auto, cpu, cuda or cuda:N)"
                )),
            },
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice to a device, failing clearly when CUDA was asked for but is absent.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                let count = tch::Cuda::device_count() as usize;
                if count == 0 {
                    bail!("CUDA was requested but no CUDA device is available (use --device cpu)");
                }
                if n >= count {
                    bail!("CUDA device {n} was requested but only {count} device(s) exist");
                }
                Ok(Device::Cuda(n))
            }
        }
    }
}

/// Numeric precision of the network's forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats everywhere.
    #[default]
    Fp32,
    /// bfloat16 (CUDA only).
    Bf16,
    /// IEEE half precision (CUDA only).
    Fp16,
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Self::Fp32),
            "bf16" => Ok(Self::Bf16),
            "fp16" => Ok(Self::Fp16),
            _ => Err(format!(
                "unknown precision `{s}` (expected fp32, bf16 or fp16)"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        })
    }
}

impl Precision {
    /// The tensor kind of this precision.
    pub fn kind(self) -> Kind {
        match self {
            Self::Fp32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
            Self::Fp16 => Kind::Half,
        }
    }

    /// Refuses half precision on the CPU, where libtorch's half kernels are slow or missing.
    pub fn check_device(self, device: Device) -> Result<()> {
        if self != Self::Fp32 && device == Device::Cpu {
            bail!("--precision {self} needs a CUDA device; on the CPU use --precision fp32");
        }
        Ok(())
    }
}

/// Turns on the CUDA settings that pay for fixed-size convolutions (cuDNN autotuning).
pub fn tune_for(device: Device) {
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
}

/// Short human name of a device, for logs.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

/// The same values laid out channels-last (NHWC strides, NCHW shape). Training runs its
/// convolutions this way: on the CPU, oneDNN's training step is about 15% faster (measured at
/// 128², batch 4); inference is not (its forward pass measured slower), so `infer` keeps NCHW.
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Re-lays every 4-D variable of a var store channels-last, in place (values unchanged).
pub fn vars_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                let relaid = channels_last(&var);
                var.set_data(&relaid);
            }
        }
    });
}
