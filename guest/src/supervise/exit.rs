//! Mapping a raw `waitpid` status to the exit code reported to the host.

/// The exit code of a wait status: the process's own code, or 128+signal
/// when a signal killed it (the shell convention). Also returns the signal.
pub fn exit_code_from_wait_status(raw: i32) -> (i32, Option<i32>) {
    if libc::WIFEXITED(raw) {
        (libc::WEXITSTATUS(raw), None)
    } else if libc::WIFSIGNALED(raw) {
        let sig = libc::WTERMSIG(raw);
        (128 + sig, Some(sig))
    } else {
        // Stopped or continued: not an exit. Callers only pass statuses of
        // processes that are gone, so this is a defensive fallback.
        (128, None)
    }
}

/// A raw wait status for a normal exit with `code` (for tests and fakes).
pub const fn exited(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// A raw wait status for death by `signal` (for tests and fakes).
pub const fn signaled(signal: i32) -> i32 {
    signal & 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_signals_map_like_a_shell() {
        let table = [
            (exited(0), 0, None),
            (exited(7), 7, None),
            (exited(255), 255, None),
            (signaled(libc::SIGTERM), 143, Some(15)),
            (signaled(libc::SIGKILL), 137, Some(9)),
            (signaled(libc::SIGSEGV), 139, Some(11)),
            // Core dumped flag (0x80) does not change the code.
            (signaled(libc::SIGABRT) | 0x80, 134, Some(6)),
        ];
        for (raw, code, sig) in table {
            assert_eq!(exit_code_from_wait_status(raw), (code, sig), "raw {raw:#x}");
        }
    }
}
