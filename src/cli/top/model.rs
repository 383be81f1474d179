//! The summary `swarmlog top` shows, built from the JSON of `GET /v1/agents`, `/v1/tasks`,
//! `/v1/locks` and the event envelopes of the feed. Pure: no terminal, no clock, no I/O, so
//! every rule (an agent's current task, the counts, the order of the tasks, the countdowns)
//! is unit-tested without a screen. Fields the server leaves out, or sends with another
//! type, become empty values instead of errors: a dashboard shows what it can.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The task statuses in the order of their life (SPEC §3), which is the order of the counts.
pub const TASK_STATUSES: [&str; 7] = [
    "blocked",
    "awaiting_approval",
    "pending",
    "claimed",
    "completed",
    "failed",
    "cancelled",
];

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// Its id.
    pub id: String,
    /// `active`, `expired`, `killed` or `deregistered`.
    pub status: String,
    /// When its lease runs out, if it has one.
    pub lease_expires_at: Option<OffsetDateTime>,
    /// The claimed task whose `agent` is this agent (the first by id if several).
    pub current_task: Option<String>,
    /// Its capabilities.
    pub capabilities: Vec<String>,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// Its id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// 1 to 10, 10 most urgent.
    pub priority: u64,
    /// The claimant, while claimed.
    pub agent: Option<String>,
    /// The attempt number, once claimed.
    pub attempt: Option<u64>,
    /// Its title, if any.
    pub title: String,
}

/// One holder of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The owner.
    pub owner: String,
    /// The fencing token.
    pub token: u64,
    /// When this hold runs out.
    pub expires_at: Option<OffsetDateTime>,
}

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    /// The resource.
    pub resource: String,
    /// `exclusive` or `shared`.
    pub mode: String,
    /// The holders.
    pub holders: Vec<Holder>,
    /// The waiters' owners, first served first.
    pub waiters: Vec<String>,
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Its seq.
    pub seq: u64,
    /// The time of day it was appended (UTC), `HH:MM:SS`.
    pub time: String,
    /// Its type.
    pub event_type: String,
    /// Its stream.
    pub stream: String,
    /// Its actor.
    pub actor: String,
    /// Its session, if any.
    pub session: Option<String>,
}

/// The state of the swarm at one refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every agent, by id.
    pub agents: Vec<AgentRow>,
    /// How many tasks are in each of [`TASK_STATUSES`], in that order.
    pub task_counts: Vec<(&'static str, usize)>,
    /// Every task, most relevant first ([`relevance`]).
    pub tasks: Vec<TaskRow>,
    /// Every lock, by resource.
    pub locks: Vec<LockRow>,
}

impl Summary {
    /// Builds the summary from the answers of `GET /v1/agents`, `/v1/tasks` and `/v1/locks`.
    pub fn from_json(agents: &Value, tasks: &Value, locks: &Value) -> Summary {
        let mut tasks: Vec<TaskRow> = items(tasks, "tasks").map(task_row).collect();
        tasks.sort_by(|left, right| {
            relevance(left)
                .cmp(&relevance(right))
                .then_with(|| left.id.cmp(&right.id))
        });
        let mut agents: Vec<AgentRow> = items(agents, "agents")
            .map(|agent| agent_row(agent, &tasks))
            .collect();
        agents.sort_by(|left, right| left.id.cmp(&right.id));
        let mut locks: Vec<LockRow> = items(locks, "locks").map(lock_row).collect();
        locks.sort_by(|left, right| left.resource.cmp(&right.resource));
        Summary {
            agents,
            task_counts: count_by_status(&tasks),
            tasks,
            locks,
        }
    }
}

/// The sort key of a task in the list: work in progress first, then what can be claimed
/// next, then what waits, then what is over; within a status, most urgent first.
pub fn relevance(task: &TaskRow) -> (usize, std::cmp::Reverse<u64>) {
    let rank = match task.status.as_str() {
        "claimed" => 0,
        "pending" => 1,
        "awaiting_approval" => 2,
        "blocked" => 3,
        "failed" => 4,
        "completed" => 5,
        "cancelled" => 6,
        _ => 7,
    };
    (rank, std::cmp::Reverse(task.priority))
}

/// The counts of [`TASK_STATUSES`] (a status the server may add later is not counted).
pub fn count_by_status(tasks: &[TaskRow]) -> Vec<(&'static str, usize)> {
    TASK_STATUSES
        .iter()
        .map(|status| {
            let count = tasks.iter().filter(|task| task.status == *status).count();
            (*status, count)
        })
        .collect()
}

/// The task an agent is working on: a claimed task whose claimant is the agent.
pub fn current_task<'a>(agent: &str, tasks: &'a [TaskRow]) -> Option<&'a TaskRow> {
    tasks
        .iter()
        .filter(|task| task.status == "claimed" && task.agent.as_deref() == Some(agent))
        .min_by(|left, right| left.id.cmp(&right.id))
}

/// An event envelope as a row.
pub fn event_row(envelope: &Value) -> EventRow {
    let ts = text(envelope, "ts");
    EventRow {
        seq: envelope["seq"].as_u64().unwrap_or(0),
        time: ts.get(11..19).unwrap_or(&ts).to_owned(),
        event_type: text(envelope, "type"),
        stream: text(envelope, "stream"),
        actor: text(envelope, "actor"),
        session: envelope["session"].as_str().map(str::to_owned),
    }
}

/// The time left until `expires_at`, for a countdown: `-` when there is no deadline,
/// `expired` once it passed, else the two largest units (`42s`, `9m05s`, `3h07m`, `2d04h`).
pub fn format_remaining(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(expires_at) = expires_at else {
        return "-".to_owned();
    };
    let left = (expires_at - now).whole_seconds();
    if left < 0 {
        return "expired".to_owned();
    }
    let (days, hours, minutes, seconds) =
        (left / 86_400, left / 3_600 % 24, left / 60 % 60, left % 60);
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// Parses an RFC 3339 time of the API.
pub fn parse_time(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

/// The array `field` of a list answer (nothing if it is missing).
fn items<'a>(answer: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    answer[field].as_array().into_iter().flatten()
}

/// A string field, or the empty string.
fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

fn task_row(task: &Value) -> TaskRow {
    TaskRow {
        id: text(task, "id"),
        status: text(task, "status"),
        priority: task["priority"].as_u64().unwrap_or(0),
        agent: task["agent"].as_str().map(str::to_owned),
        attempt: task["attempt"].as_u64(),
        title: text(task, "title"),
    }
}

fn agent_row(agent: &Value, tasks: &[TaskRow]) -> AgentRow {
    let id = text(agent, "id");
    AgentRow {
        current_task: current_task(&id, tasks).map(|task| task.id.clone()),
        status: text(agent, "status"),
        lease_expires_at: parse_time(&agent["lease_expires_at"]),
        capabilities: strings(&agent["capabilities"]),
        id,
    }
}

fn lock_row(lock: &Value) -> LockRow {
    let holders = items(lock, "holders")
        .map(|holder| Holder {
            owner: text(holder, "owner"),
            token: holder["token"].as_u64().unwrap_or(0),
            expires_at: parse_time(&holder["expires_at"]),
        })
        .collect();
    let waiters = items(lock, "waiters")
        .map(|waiter| match waiter {
            Value::String(owner) => owner.clone(),
            other => text(other, "owner"),
        })
        .collect();
    LockRow {
        resource: text(lock, "resource"),
        mode: text(lock, "mode"),
        holders,
        waiters,
    }
}

/// The state of the feed, for the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Not subscribed yet.
    Connecting,
    /// Subscribed; replaying the latest events.
    CatchingUp,
    /// Following live.
    Live,
    /// The connection dropped (why); the feed is retrying.
    Reconnecting(String),
}

/// Everything one frame shows: what the screen loop knows, drawn by `view`.
#[derive(Debug, Clone)]
pub struct Screen {
    /// The server's URL.
    pub url: String,
    /// The branch shown.
    pub branch: String,
    /// The session filter, if any.
    pub session: Option<String>,
    /// The feed's state.
    pub connection: Connection,
    /// The highest seq known (the catch-up's head, or a later event).
    pub head: u64,
    /// The state at the last refresh.
    pub summary: Summary,
    /// Why the last refresh failed, until one succeeds.
    pub refresh_error: Option<String>,
    /// The latest events, newest first.
    pub events: std::collections::VecDeque<EventRow>,
    /// How many events are kept.
    pub events_kept: usize,
}

impl Screen {
    /// Takes one event of the feed: it moves the head, and it is kept when it belongs to
    /// the session filter (or there is none), dropping the oldest beyond `events_kept`.
    pub fn push_event(&mut self, envelope: &Value) {
        let row = event_row(envelope);
        self.head = self.head.max(row.seq);
        if let Some(session) = &self.session {
            if row.session.as_ref() != Some(session) {
                return;
            }
        }
        self.events.push_front(row);
        self.events.truncate(self.events_kept);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn check(agents: Value, tasks: Value, locks: Value) -> Summary {
        Summary::from_json(&agents, &tasks, &locks)
    }

    fn swarm() -> Summary {
        check(
            json!({"agents": [
                {"id": "worker-2", "status": "active", "capabilities": ["logs"],
                 "lease_expires_at": "2026-01-01T10:10:00.000Z"},
                {"id": "worker-1", "status": "active", "capabilities": ["db", "logs"]},
            ]}),
            json!({"tasks": [
                {"id": "write-report", "status": "blocked", "priority": 5},
                {"id": "find-cause", "status": "pending", "priority": 5},
                {"id": "urgent", "status": "pending", "priority": 9},
                {"id": "collect-logs", "status": "claimed", "priority": 8,
                 "agent": "worker-2", "attempt": 1},
                {"id": "old", "status": "completed", "priority": 10, "agent": "worker-1"},
            ]}),
            json!({"locks": [{"resource": "db-primary", "mode": "exclusive",
                "holders": [{"owner": "worker-1", "token": 12,
                             "expires_at": "2026-01-01T10:00:30.000Z"}],
                "waiters": [{"owner": "worker-2", "mode": "exclusive"}]}]}),
        )
    }

    #[test]
    fn the_current_task_is_the_claimed_task_of_the_agent() {
        let summary = swarm();
        let current: Vec<_> = summary
            .agents
            .iter()
            .map(|agent| (agent.id.as_str(), agent.current_task.as_deref()))
            .collect();
        // worker-1's completed task is not current.
        assert_eq!(
            current,
            [("worker-1", None), ("worker-2", Some("collect-logs"))]
        );
    }

    #[test]
    fn counts_cover_every_status_in_order() {
        let counts = swarm().task_counts;
        assert_eq!(
            counts,
            [
                ("blocked", 1),
                ("awaiting_approval", 0),
                ("pending", 2),
                ("claimed", 1),
                ("completed", 1),
                ("failed", 0),
                ("cancelled", 0)
            ]
        );
    }

    #[test]
    fn tasks_are_listed_claimed_then_pending_by_priority() {
        let order: Vec<_> = swarm().tasks.into_iter().map(|task| task.id).collect();
        assert_eq!(
            order,
            [
                "collect-logs",
                "urgent",
                "find-cause",
                "write-report",
                "old"
            ]
        );
    }

    #[test]
    fn locks_keep_holders_with_tokens_and_waiters_in_order() {
        let lock = &swarm().locks[0];
        assert_eq!(lock.resource, "db-primary");
        assert_eq!(lock.holders[0].owner, "worker-1");
        assert_eq!(lock.holders[0].token, 12);
        assert_eq!(lock.waiters, ["worker-2"]);
    }

    #[test]
    fn missing_or_mistyped_fields_become_empty_values() {
        let summary = check(
            json!({"agents": [{"id": 7, "capabilities": "x"}]}),
            json!({"tasks": "not a list"}),
            json!(null),
        );
        assert_eq!(summary.agents[0].id, "");
        assert!(summary.agents[0].capabilities.is_empty());
        assert!(summary.tasks.is_empty());
        assert!(summary.locks.is_empty());
    }

    #[test]
    fn countdowns_show_the_two_largest_units() {
        let now = datetime!(2026-01-01 10:00:00 UTC);
        let after = |seconds: i64| Some(now + time::Duration::seconds(seconds));
        assert_eq!(format_remaining(None, now), "-");
        assert_eq!(format_remaining(after(-1), now), "expired");
        assert_eq!(format_remaining(after(0), now), "0s");
        assert_eq!(format_remaining(after(42), now), "42s");
        assert_eq!(format_remaining(after(545), now), "9m05s");
        assert_eq!(format_remaining(after(3 * 3600 + 7 * 60), now), "3h07m");
        assert_eq!(format_remaining(after(2 * 86_400 + 4 * 3600), now), "2d04h");
    }

    #[test]
    fn an_agent_lease_counts_down_from_its_expiry() {
        let agent = &swarm().agents[1];
        let now = datetime!(2026-01-01 10:09:30 UTC);
        assert_eq!(format_remaining(agent.lease_expires_at, now), "30s");
    }

    #[test]
    fn events_are_kept_newest_first_within_the_session_filter() {
        let mut screen = Screen {
            url: String::new(),
            branch: "main".into(),
            session: Some("inc-7".into()),
            connection: Connection::Live,
            head: 0,
            summary: Summary::default(),
            refresh_error: None,
            events: Default::default(),
            events_kept: 2,
        };
        for seq in 1..=4 {
            screen.push_event(&json!({"seq": seq, "session": "inc-7"}));
        }
        screen.push_event(&json!({"seq": 5, "session": "other"}));
        let kept: Vec<u64> = screen.events.iter().map(|event| event.seq).collect();
        assert_eq!(kept, [4, 3]);
        assert_eq!(screen.head, 5);
    }

    #[test]
    fn an_event_row_shows_the_time_of_day() {
        let row = event_row(&json!({"seq": 42, "ts": "2026-11-22T10:00:00.123Z",
            "type": "task.claimed", "stream": "task/T-17", "actor": "agent-1"}));
        assert_eq!(row.seq, 42);
        assert_eq!(row.time, "10:00:00");
        assert_eq!(row.event_type, "task.claimed");
        assert_eq!(row.session, None);
    }
}
