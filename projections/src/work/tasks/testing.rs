//! Helpers shared by the task tests: the commands and reads most of them repeat.

use serde_json::json;

use crate::rejection::Rejection;
use crate::rejection::{Code, RejectionKind};
use crate::work::tasks::*;
use crate::work::testkit::{claim, task_of, Harness};
use crate::work::WorkCommand;

pub(super) fn complete(task: &str, agent: &str) -> WorkCommand {
    WorkCommand::TaskComplete {
        task: task.into(),
        spec: CompleteSpec {
            agent: agent.into(),
            result: Some(json!("ok")),
        },
    }
}

pub(super) fn fail(task: &str, agent: &str, retry: bool) -> WorkCommand {
    WorkCommand::TaskFail {
        task: task.into(),
        spec: FailSpec {
            agent: agent.into(),
            error: Some(json!("boom")),
            retry: Some(retry),
        },
    }
}

pub(super) fn claimed_id(
    harness: &mut Harness,
    agent: &str,
    capabilities: &[&str],
) -> Option<String> {
    let events = harness.ok(claim(agent, capabilities));
    assert!(events.len() <= 1, "a claim takes at most one task");
    events.first().map(task_of)
}

pub(super) fn status(harness: &Harness, id: &str) -> TaskStatus {
    harness.task(id).status
}

pub(super) fn invalid_field(rejection: &Rejection) -> &str {
    assert_eq!(rejection.kind, RejectionKind::Invalid, "{rejection:?}");
    assert!(
        matches!(rejection.code, Code::InvalidValue | Code::InvalidId),
        "{rejection:?}"
    );
    rejection.details["field"]
        .as_str()
        .expect("an invalid value or id names its field")
}

pub(super) fn assign(task: &str, agent: Option<&str>, strategy: Option<&str>) -> WorkCommand {
    WorkCommand::TaskAssign {
        task: task.into(),
        spec: AssignSpec {
            agent: agent.map(str::to_owned),
            strategy: strategy.map(str::to_owned),
        },
    }
}
