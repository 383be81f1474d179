//! Draws one frame of `swarmlog top` from a [`Screen`]: a header line, the agents, the
//! tasks (counts by status, then the most relevant ones) beside the locks, and the latest
//! events. Drawing only reads; the countdowns take `now` so every frame shows the time
//! left at that moment.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use time::OffsetDateTime;

use super::model::{format_remaining, Connection, Screen};

/// At most this many agent rows get room before the middle panes do (more scroll off).
const AGENT_ROWS_MAX: usize = 10;

/// At most this many event rows get room; `--events` may keep more than fit.
const EVENT_ROWS_MAX: usize = 12;

/// The tasks and locks keep at least this many rows (borders, counts, header and a few
/// tasks) before the agents and events get theirs.
const MIDDLE_ROWS_MIN: u16 = 8;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, screen: &Screen, now: OffsetDateTime) {
    let agent_rows = screen.summary.agents.len().clamp(1, AGENT_ROWS_MAX);
    let event_rows = screen.events_kept.clamp(1, EVENT_ROWS_MAX);
    let (agents_height, events_height) =
        pane_heights(frame.area().height, height(agent_rows), height(event_rows));
    let [header, agents, middle, events] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(agents_height),
        Constraint::Fill(1),
        Constraint::Length(events_height),
    ])
    .areas(frame.area());
    let [tasks, locks] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(middle);
    frame.render_widget(header_line(screen), header);
    frame.render_widget(agents_table(screen, now), agents);
    draw_tasks(frame, screen, tasks);
    frame.render_widget(locks_table(screen, now), locks);
    frame.render_widget(events_table(screen), events);
}

/// The heights of the agents and events panes on a screen `total` rows high, given what
/// each would like: the tasks and locks keep at least [`MIDDLE_ROWS_MIN`] rows, the
/// agents come next, and the events get what is left.
fn pane_heights(total: u16, agents_wanted: u16, events_wanted: u16) -> (u16, u16) {
    let available = total.saturating_sub(1 + MIDDLE_ROWS_MIN);
    let agents = agents_wanted.min(available);
    let events = events_wanted.min(available - agents);
    (agents, events)
}

/// The height of a bordered table of `rows` rows: borders and its header row.
fn height(rows: usize) -> u16 {
    u16::try_from(rows + 3).unwrap_or(u16::MAX)
}

fn header_line(screen: &Screen) -> Paragraph<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let (state, color) = match &screen.connection {
        Connection::Connecting => ("connecting".to_owned(), Color::Yellow),
        Connection::CatchingUp => ("catching up".to_owned(), Color::Yellow),
        Connection::Live => ("live".to_owned(), Color::Green),
        Connection::Reconnecting(reason) => (format!("reconnecting ({reason})"), Color::Red),
    };
    let mut spans = vec![
        // `q quits` first, so a long reason at the end never hides it.
        Span::styled("swarmlog top", bold),
        Span::raw(" (q quits)"),
        Span::raw(format!(
            "  {}  branch {}  seq {}  ",
            screen.url, screen.branch, screen.head
        )),
        Span::styled(state, Style::default().fg(color)),
    ];
    if let Some(session) = &screen.session {
        spans.push(Span::raw(format!("  session {session}")));
    }
    if let Some(error) = &screen.refresh_error {
        spans.push(Span::styled(
            format!("  refresh failed: {error}"),
            Style::default().fg(Color::Red),
        ));
    }
    Paragraph::new(Line::from(spans))
}

fn titled(title: &str) -> Block<'static> {
    Block::bordered().title(Span::styled(
        format!(" {title} "),
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

fn header_row(names: &[&'static str]) -> Row<'static> {
    Row::new(names.to_vec()).style(Style::default().add_modifier(Modifier::UNDERLINED))
}

/// A column as wide as its widest cell or title, within `low..=high`.
fn column(cells: impl Iterator<Item = usize>, title: &str, low: usize, high: usize) -> Constraint {
    let widest = cells.max().unwrap_or(0).max(title.len());
    Constraint::Length(u16::try_from(widest.clamp(low, high)).unwrap_or(u16::MAX))
}

fn agents_table(screen: &Screen, now: OffsetDateTime) -> Table<'static> {
    let agents = &screen.summary.agents;
    let rows = agents.iter().map(|agent| {
        Row::new(vec![
            agent.id.clone(),
            agent.status.clone(),
            format_remaining(agent.lease_expires_at, now),
            agent.current_task.clone().unwrap_or_else(|| "-".to_owned()),
            agent.capabilities.join(","),
        ])
        .style(status_style(&agent.status))
    });
    let widths = [
        column(agents.iter().map(|a| a.id.len()), "agent", 8, 32),
        Constraint::Length(12),
        Constraint::Length(8),
        column(
            agents
                .iter()
                .map(|a| a.current_task.as_ref().map_or(1, String::len)),
            "task",
            8,
            32,
        ),
        Constraint::Fill(1),
    ];
    Table::new(rows, widths)
        .header(header_row(&[
            "agent",
            "status",
            "lease",
            "task",
            "capabilities",
        ]))
        .block(titled(&format!("agents ({})", agents.len())))
}

fn status_style(status: &str) -> Style {
    let color = match status {
        "active" | "claimed" => Color::Green,
        "expired" | "failed" => Color::Red,
        "killed" | "cancelled" => Color::Magenta,
        "deregistered" | "completed" => Color::DarkGray,
        _ => return Style::default(),
    };
    Style::default().fg(color)
}

/// The tasks pane: the counts by status on top, then the tasks, most relevant first.
fn draw_tasks(frame: &mut Frame, screen: &Screen, area: Rect) {
    let summary = &screen.summary;
    let block = titled(&format!("tasks ({})", summary.tasks.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let counts = summary
        .task_counts
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect::<Vec<_>>()
        .join("  ");
    let count_lines = if counts.len() > usize::from(inner.width) {
        2
    } else {
        1
    };
    let [counts_area, table_area] =
        Layout::vertical([Constraint::Length(count_lines), Constraint::Min(0)]).areas(inner);
    frame.render_widget(
        Paragraph::new(counts).wrap(Wrap { trim: true }),
        counts_area,
    );
    let rows = summary.tasks.iter().map(|task| {
        Row::new(vec![
            task.id.clone(),
            task.status.clone(),
            task.priority.to_string(),
            task.agent.clone().unwrap_or_else(|| "-".to_owned()),
            task.attempt
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            task.title.clone(),
        ])
        .style(status_style(&task.status))
    });
    let widths = [
        column(summary.tasks.iter().map(|t| t.id.len()), "task", 8, 32),
        Constraint::Length(17),
        Constraint::Length(3),
        column(
            summary
                .tasks
                .iter()
                .map(|t| t.agent.as_ref().map_or(1, String::len)),
            "claimant",
            8,
            24,
        ),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths).header(header_row(&[
        "task", "status", "pri", "claimant", "attempt", "title",
    ]));
    frame.render_widget(table, table_area);
}

fn locks_table(screen: &Screen, now: OffsetDateTime) -> Table<'static> {
    let locks = &screen.summary.locks;
    let rows = locks.iter().map(|lock| {
        let holders = lock
            .holders
            .iter()
            .map(|holder| {
                let left = format_remaining(holder.expires_at, now);
                format!("{} #{} {left}", holder.owner, holder.token)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let waiters = if lock.waiters.is_empty() {
            "-".to_owned()
        } else {
            lock.waiters.join(" > ")
        };
        Row::new(vec![
            lock.resource.clone(),
            lock.mode.clone(),
            holders,
            waiters,
        ])
    });
    let widths = [
        column(locks.iter().map(|l| l.resource.len()), "resource", 8, 24),
        Constraint::Length(9),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ];
    Table::new(rows, widths)
        .header(header_row(&[
            "resource",
            "mode",
            "holders #token left",
            "waiters",
        ]))
        .block(titled(&format!("locks ({})", locks.len())))
}

fn events_table(screen: &Screen) -> Table<'static> {
    let rows = screen.events.iter().map(|event| {
        Row::new(vec![
            event.seq.to_string(),
            event.time.clone(),
            event.event_type.clone(),
            event.stream.clone(),
            event.actor.clone(),
        ])
    });
    let events = &screen.events;
    let widths = [
        column(events.iter().map(|e| e.seq.to_string().len()), "seq", 3, 20),
        Constraint::Length(8),
        column(events.iter().map(|e| e.event_type.len()), "type", 12, 32),
        column(events.iter().map(|e| e.stream.len()), "stream", 12, 48),
        Constraint::Fill(1),
    ];
    Table::new(rows, widths)
        .header(header_row(&["seq", "time", "type", "stream", "actor"]))
        .block(titled("latest events"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_screen_shrinks_the_events_first_then_the_agents() {
        // Room for everything.
        assert_eq!(pane_heights(40, 6, 13), (6, 13));
        // 24 rows: the middle keeps 8, the agents 6, the events get the other 9.
        assert_eq!(pane_heights(24, 6, 13), (6, 9));
        assert_eq!(pane_heights(12, 6, 13), (3, 0));
        assert_eq!(pane_heights(3, 6, 13), (0, 0));
    }
}
