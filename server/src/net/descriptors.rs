//! The process's file-descriptor limit: raised to its hard limit at start, and shared
//! between connections and the disk so that sockets can never take the descriptors the
//! log needs to roll a segment or write a snapshot (issue #9, defect 1: with
//! `ulimit -n 128` and 200 idle connections the server aborted at the next segment roll).

use crate::limits::{CONNECTIONS_MIN, DESCRIPTORS_RESERVED, REFUSALS_IN_FLIGHT_MAX};

/// The file-descriptor limit before and after [`raise_soft_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now; `None` when unlimited.
    pub soft: Option<u64>,
    /// The hard limit; `None` when unlimited.
    pub hard: Option<u64>,
}

/// A file-descriptor limit too low to serve anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the file-descriptor limit is {soft}, which leaves room for fewer than {CONNECTIONS_MIN} \
     connections after the {reserved} descriptors kept for the log; raise it (ulimit -n) to at \
     least {needed}"
)]
pub struct TooFewDescriptors {
    /// The soft limit.
    pub soft: u64,
    /// Descriptors kept for everything but connections.
    pub reserved: u64,
    /// The least soft limit that serves.
    pub needed: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: the soft limit is often 1,024 while
/// the hard one allows far more, and a server should not need its operator to know that.
#[cfg(not(unix))]
pub fn raise_soft_limit() -> std::io::Result<DescriptorLimit> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: the soft limit is often 1,024 while
/// the hard one allows far more, and a server should not need its operator to know that.
#[cfg(unix)]
pub fn raise_soft_limit() -> std::io::Result<DescriptorLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur != limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    let finite = |value: libc::rlim_t| (value != libc::RLIM_INFINITY).then_some(value);
    Ok(DescriptorLimit {
        soft_before,
        soft: finite(limit.rlim_cur),
        hard: finite(limit.rlim_max),
    })
}

/// Descriptors kept for everything but accepted connections: the log's reserve, the
/// connections being refused, and the one a refusal's `accept` takes for a moment.
pub fn reserved() -> u64 {
    DESCRIPTORS_RESERVED + REFUSALS_IN_FLIGHT_MAX as u64 + 1
}

/// How many connections may be open under the soft limit `soft` when `requested` are
/// asked for: `requested`, or what the limit leaves after [`reserved`] if that is less.
pub fn connections_allowed(
    requested: usize,
    soft: Option<u64>,
) -> Result<usize, TooFewDescriptors> {
    let Some(soft) = soft else {
        return Ok(requested);
    };
    let reserved = reserved();
    let room = soft.saturating_sub(reserved);
    if room < CONNECTIONS_MIN {
        return Err(TooFewDescriptors {
            soft,
            reserved,
            needed: reserved + CONNECTIONS_MIN,
        });
    }
    Ok(usize::try_from(room).map_or(requested, |room| requested.min(room)))
}

#[cfg(test)]
mod tests {
    use super::{connections_allowed, reserved};

    #[test]
    fn connections_get_what_the_limit_leaves_after_the_reserve() {
        assert_eq!(connections_allowed(1024, None), Ok(1024));
        assert_eq!(connections_allowed(1024, Some(1_048_576)), Ok(1024));
        assert_eq!(
            connections_allowed(1024, Some(128)),
            Ok(128 - reserved() as usize)
        );
        let too_few = connections_allowed(1024, Some(reserved() + 7));
        assert_eq!(too_few.map_err(|error| error.needed), Err(reserved() + 8));
    }
}
