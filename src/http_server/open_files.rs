//! Raising the soft limit on open files to the hard limit, so that `server.max_connections`
//! (default 4096) is not cut short by a soft limit of 1024: past it, `accept` fails and new
//! clients wait however many slots are free.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force
/// (`None`: unlimited). A failure is logged, never fatal.
pub fn raise_to_hard_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open file limit");
            limit.maximum
        }
        Err(err) => {
            tracing::warn!(error = %err, soft = ?limit.current, "cannot raise the open file limit");
            limit.current
        }
    }
}
