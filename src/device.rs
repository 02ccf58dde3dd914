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
    /// bfloat16 (CUDA, or a CPU with AVX-512 BF16 or AMX).
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

    /// Refuses fp16 on the CPU (libtorch's half kernels there are slow or missing), and bf16
    /// on a CPU without bfloat16 arithmetic (oneDNN would emulate it, slower than fp32).
    pub fn check_device(self, device: Device) -> Result<()> {
        match (self, device) {
            (Self::Fp16, Device::Cpu) => bail!(
                "--precision fp16 needs a CUDA device; on the CPU use fp32, or bf16 where the \
                 CPU has AVX-512 BF16 or AMX"
            ),
            (Self::Bf16, Device::Cpu) => match cpu_bf16_missing() {
                Some(why) => bail!("--precision bf16 on the CPU needs {why}; use --precision fp32"),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// What this CPU lacks for fast bfloat16 (AVX-512 BF16 or AMX-BF16, the instructions that
/// oneDNN's bf16 convolutions use), or `None` when it has them.
pub fn cpu_bf16_missing() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        return None;
    }
    // AMX detection is not stable in std::arch; the kernel lists the flag it enabled.
    if cpu_info("flags").is_some_and(|flags| flags.split_whitespace().any(|f| f == "amx_bf16")) {
        return None;
    }
    Some(format!(
        "AVX-512 BF16 or AMX-BF16, which this CPU ({}) lacks",
        cpu_model()
    ))
}

/// The CPU's model name (from /proc/cpuinfo), or the architecture where that is unknown.
pub fn cpu_model() -> String {
    cpu_info("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// A field of the first processor in /proc/cpuinfo.
fn cpu_info(field: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(key, _)| key.trim() == field)
        .map(|(_, value)| value.trim().to_string())
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
