//! The console's views: their names, the `:name` aliases operators type, and their order
//! on the tab bar.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Services,
    Volumes,
    Jobs,
    Logs,
    Doctor,
    /// The audit log.
    Events,
    /// The selected volume's clone family (k9s's xray), opened from Volumes with `x`.
    Family,
    /// Backups in the backup store, newest first.
    Backups,
}

impl View {
    pub const ALL: [View; 9] = [
        View::Overview,
        View::Services,
        View::Volumes,
        View::Jobs,
        View::Logs,
        View::Doctor,
        View::Events,
        View::Backups,
        View::Family,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Services => "services",
            View::Volumes => "volumes",
            View::Jobs => "jobs",
            View::Logs => "logs",
            View::Doctor => "doctor",
            View::Events => "events",
            View::Family => "family",
            View::Backups => "backups",
        }
    }

    /// A view whose keys fall back to another's: the family view acts on volumes.
    pub fn borrows(self) -> Option<View> {
        (self == View::Family).then_some(View::Volumes)
    }

    pub(super) fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// `:name` command mode, with short aliases as operators type them.
    pub fn parse(s: &str) -> Option<View> {
        match s.trim().trim_start_matches(':') {
            "overview" | "o" | "home" => Some(View::Overview),
            "services" | "service" | "svc" | "s" => Some(View::Services),
            "volumes" | "volume" | "vol" | "v" => Some(View::Volumes),
            "jobs" | "job" | "j" => Some(View::Jobs),
            "logs" | "log" | "l" => Some(View::Logs),
            "doctor" | "dr" | "d" => Some(View::Doctor),
            "events" | "event" | "ev" | "e" | "audit" => Some(View::Events),
            "family" | "xray" | "x" | "tree" => Some(View::Family),
            "backups" | "backup" | "bk" | "b" => Some(View::Backups),
            _ => None,
        }
    }
}
