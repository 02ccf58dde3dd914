//! Turns a panic inside one file's work into that file's error: a decoder bug or a libtorch
//! exception (tch panics on them, e.g. out of memory) must not end a run over many files.
use anyhow::{anyhow, Result};
use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    /// How many [`catch`] calls are active on this thread (nested when rayon steals work).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Installs a panic hook that stays silent for panics that [`catch`] turns into errors and
/// reports every other panic as the default hook does.
pub fn install_quiet_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if DEPTH.with(Cell::get) == 0 {
            default(info);
        }
    }));
}

/// Runs `work`; a panic becomes an error carrying the first line of its message.
pub fn catch<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(work));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.unwrap_or_else(|payload| Err(anyhow!("internal error: {}", message(&*payload))))
}

fn message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "panic"
    };
    // libtorch messages carry a C++ backtrace after the first line.
    text.lines().next().unwrap_or("panic").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_first_line() {
        let err = catch::<()>(|| panic!("out of memory\nframe #0: c10::Error")).unwrap_err();
        assert_eq!(err.to_string(), "internal error: out of memory");
        assert_eq!(catch(|| Ok(7)).unwrap(), 7);
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
