//! Where neural work (the encoder, the causal LM) runs: `cpu` (the default) or an NVIDIA GPU (`cuda`,
//! `cuda:N`) when hone is built with `--features cuda` (this crate's `cuda` feature).

use candle_core::Device;
use hone_core::{Error, Result};

/// Parses a device setting: `cpu`, `cuda` (GPU 0) or `cuda:N`.
pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(n) => n
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad(spec))?,
        None => return Err(bad(spec)),
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::Usage(format!(
            "device `{spec}`: this hone was built without GPU support; rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use device = \"cpu\""
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Usage(format!(
            "device `{spec}`: no usable CUDA device {ordinal}: {e}"
        ))
    })
}

fn bad(spec: &str) -> Error {
    Error::Usage(format!(
        "unknown device `{spec}`: use \"cpu\", \"cuda\" or \"cuda:N\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_the_rest_clearly() {
        assert!(parse("cpu").unwrap().is_cpu());
        assert!(parse(" CPU ").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda1", "", "metal"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown device"), "{bad}: {e}");
        }
        // Without the feature (or without a GPU) a CUDA device is a clear error, never a silent CPU run.
        if !cfg!(feature = "cuda") {
            let e = parse("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
