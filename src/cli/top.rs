//! `swarmlog top`: the swarm at a glance in a terminal (agents, tasks by status, locks
//! with their waiters, the latest events), kept live from the server's SSE feed.
//!
//! Three sources feed one screen loop: the terminal's keys (a thread, since crossterm
//! reads block), the event feed ([`feed`]) and the refreshes. Each event marks the state
//! dirty; a refresh (`GET /v1/agents`, `/v1/tasks`, `/v1/locks`) starts when the state is
//! dirty, none is in flight and the last began at least [`REFRESH_INTERVAL_MS_MIN`] ago,
//! so a burst of events costs a few refreshes, not one each. The loop redraws after every
//! input and on a tick, so countdowns move every second. The terminal is restored (raw
//! mode off, alternate screen left) however the loop ends, and on a panic.

mod feed;
mod model;
mod view;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::args::TopArgs;
use super::client::{encode_segment, Client};
use super::{CliError, Config};
use feed::FeedMessage;
use model::{Connection, Screen, Summary};

/// The shortest time between the starts of two refreshes: at most four a second, which
/// looks live to a person and costs the server little however busy the log is.
const REFRESH_INTERVAL_MS_MIN: u64 = 250;

/// After a failed refresh (the server is restarting, say), the next waits this long.
const REFRESH_RETRY_MS: u64 = 1_000;

/// A refresh that takes longer than this fails, so a hung server shows as an error.
const REFRESH_TIMEOUT_MS: u64 = 5_000;

/// The screen loop wakes at least this often: countdowns tick each second, and a due
/// refresh starts within this much of its time.
const TICK_MS: u64 = 250;

/// How long the key thread waits for a key before checking whether the loop is gone.
const KEY_POLL_MS: u64 = 100;

/// Feed messages taken in one go before a redraw, so a burst (the catch-up) is drawn once.
const FEED_BATCH_MAX: usize = 512;

/// Messages buffered between a source and the loop.
const CHANNEL_CAPACITY: usize = 256;

/// What the terminal tells the loop.
enum TerminalInput {
    Key(KeyEvent),
    Resize,
    Failed(String),
}

/// The request paths of one `top`.
struct Paths {
    agents: String,
    tasks: String,
    locks: String,
}

/// `swarmlog top`.
pub async fn run(config: &Config, args: TopArgs) -> Result<(), CliError> {
    if !std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "swarmlog top draws on a terminal and stdout is not one (to log events, use `swarmlog events tail`)",
        ));
    }
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let Client::Remote { base, .. } = &client else {
        return Err(CliError::failure(format!(
            "swarmlog top follows a running server: start `swarmlog serve --db {}` or pass --url",
            config.db.display()
        )));
    };
    let url = base.clone();
    let client = Arc::new(client);
    let paths = Arc::new(paths(config, &args));
    // The first state is read before the screen is taken, so a wrong URL, token or branch
    // is one clear error line instead of a dashboard of failures.
    let summary = fetch_summary(&client, &paths).await?;
    let head = client.call(Method::GET, "/v1/audit/head", None).await?["seq"]
        .as_u64()
        .unwrap_or(0);
    let events_kept = usize::from(args.events);
    let screen = Screen {
        url,
        branch: config.branch.clone().unwrap_or_else(|| "main".to_owned()),
        session: args.session.clone(),
        connection: Connection::Connecting,
        head,
        summary,
        refresh_error: None,
        events: Default::default(),
        events_kept,
    };
    // The feed starts far enough back to fill the events pane, then follows live.
    let from = head.saturating_sub(u64::from(args.events)) + 1;
    let events_path = with_branch(config, format!("/v1/events?from={from}"));
    let (feed_sender, feed) = mpsc::channel(CHANNEL_CAPACITY);
    let feed_task = tokio::spawn(feed::follow(client.clone(), events_path, feed_sender));
    let outcome = show(screen, client, paths, feed).await;
    feed_task.abort();
    outcome
}

/// Takes the terminal, runs the screen loop and gives the terminal back.
async fn show(
    screen: Screen,
    client: Arc<Client>,
    paths: Arc<Paths>,
    feed: mpsc::Receiver<FeedMessage>,
) -> Result<(), CliError> {
    // Made first, so even a half-done initialisation is undone.
    let _restore = RestoreTerminal;
    let mut terminal = ratatui::try_init()
        .map_err(|error| CliError::failure(format!("cannot set up the terminal: {error}")))?;
    let (key_sender, keys) = mpsc::channel(CHANNEL_CAPACITY);
    spawn_key_reader(key_sender);
    let mut top = Top {
        screen,
        client,
        paths,
        refresh: Refresh::new(Instant::now()),
    };
    top.screen_loop(&mut terminal, keys, feed).await
}

/// Restores the terminal when dropped, whichever way `show` returns.
struct RestoreTerminal;

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads the terminal's keys and resizes on a thread of its own (crossterm's reads
/// block), until the loop drops its receiver.
fn spawn_key_reader(sender: mpsc::Sender<TerminalInput>) {
    std::thread::spawn(move || {
        while !sender.is_closed() {
            let input = match event::poll(Duration::from_millis(KEY_POLL_MS)) {
                Ok(false) => continue,
                Ok(true) => match event::read() {
                    Ok(Event::Key(key)) => TerminalInput::Key(key),
                    Ok(Event::Resize(..)) => TerminalInput::Resize,
                    Ok(_) => continue,
                    Err(error) => TerminalInput::Failed(error.to_string()),
                },
                Err(error) => TerminalInput::Failed(error.to_string()),
            };
            let failed = matches!(input, TerminalInput::Failed(_));
            if sender.blocking_send(input).is_err() || failed {
                return;
            }
        }
    });
}

/// When the next refresh may start.
struct Refresh {
    /// An event came since the last refresh started.
    dirty: bool,
    /// A refresh is running.
    in_flight: bool,
    /// No refresh starts before this.
    not_before: Instant,
}

impl Refresh {
    fn new(now: Instant) -> Refresh {
        Refresh {
            dirty: false,
            in_flight: false,
            not_before: now,
        }
    }

    fn is_due(&self, now: Instant) -> bool {
        self.dirty && !self.in_flight && now >= self.not_before
    }

    fn start(&mut self, now: Instant) {
        self.dirty = false;
        self.in_flight = true;
        self.not_before = now + Duration::from_millis(REFRESH_INTERVAL_MS_MIN);
    }

    fn finish(&mut self, succeeded: bool, now: Instant) {
        self.in_flight = false;
        if !succeeded {
            self.dirty = true;
            self.not_before = now + Duration::from_millis(REFRESH_RETRY_MS);
        }
    }
}

/// Whether the loop goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The screen loop's state.
struct Top {
    screen: Screen,
    client: Arc<Client>,
    paths: Arc<Paths>,
    refresh: Refresh,
}

impl Top {
    async fn screen_loop(
        &mut self,
        terminal: &mut DefaultTerminal,
        mut keys: mpsc::Receiver<TerminalInput>,
        mut feed: mpsc::Receiver<FeedMessage>,
    ) -> Result<(), CliError> {
        let (refreshed_sender, mut refreshed) = mpsc::channel(1);
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if self.refresh.is_due(Instant::now()) {
                self.refresh.start(Instant::now());
                let (client, paths) = (self.client.clone(), self.paths.clone());
                let sender = refreshed_sender.clone();
                tokio::spawn(async move {
                    let outcome = fetch_summary(&client, &paths).await;
                    let _ = sender.send(outcome.map_err(|error| error.message)).await;
                });
            }
            terminal
                .draw(|frame| view::draw(frame, &self.screen, OffsetDateTime::now_utc()))
                .map_err(|error| CliError::failure(format!("cannot draw: {error}")))?;
            tokio::select! {
                Some(input) = keys.recv() => {
                    if self.on_terminal(input)? == Flow::Quit {
                        return Ok(());
                    }
                }
                Some(message) = feed.recv() => {
                    self.on_feed(message);
                    for _ in 1..FEED_BATCH_MAX {
                        let Ok(message) = feed.try_recv() else { break };
                        self.on_feed(message);
                    }
                }
                Some(outcome) = refreshed.recv() => self.on_refreshed(outcome),
                _ = tick.tick() => {}
            }
        }
    }

    fn on_terminal(&mut self, input: TerminalInput) -> Result<Flow, CliError> {
        match input {
            TerminalInput::Key(key) if is_quit(&key) => Ok(Flow::Quit),
            // The next draw resizes to the terminal's new size.
            TerminalInput::Key(_) | TerminalInput::Resize => Ok(Flow::Continue),
            TerminalInput::Failed(error) => Err(CliError::failure(format!(
                "cannot read the terminal: {error}"
            ))),
        }
    }

    fn on_feed(&mut self, message: FeedMessage) {
        match message {
            FeedMessage::Connected => {
                // What happened while the feed was down is only in the state.
                self.screen.connection = Connection::CatchingUp;
                self.refresh.dirty = true;
            }
            FeedMessage::CaughtUp(head) => {
                self.screen.connection = Connection::Live;
                self.screen.head = self.screen.head.max(head);
            }
            FeedMessage::Event(envelope) => {
                self.screen.push_event(&envelope);
                self.refresh.dirty = true;
            }
            FeedMessage::Lost(reason) => self.screen.connection = Connection::Reconnecting(reason),
        }
    }

    fn on_refreshed(&mut self, outcome: Result<Summary, String>) {
        self.refresh.finish(outcome.is_ok(), Instant::now());
        match outcome {
            Ok(summary) => {
                self.screen.summary = summary;
                self.screen.refresh_error = None;
            }
            Err(error) => self.screen.refresh_error = Some(error),
        }
    }
}

/// `q`, Esc and Ctrl-C quit.
fn is_quit(key: &KeyEvent) -> bool {
    if key.kind == KeyEventKind::Release {
        return false;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// The state now: the three lists, read concurrently.
async fn fetch_summary(client: &Client, paths: &Paths) -> Result<Summary, CliError> {
    let reads = async {
        tokio::try_join!(
            client.call(Method::GET, &paths.agents, None),
            client.call(Method::GET, &paths.tasks, None),
            client.call(Method::GET, &paths.locks, None),
        )
    };
    let timeout = Duration::from_millis(REFRESH_TIMEOUT_MS);
    let (agents, tasks, locks) = tokio::time::timeout(timeout, reads).await.map_err(|_| {
        CliError::failure(format!(
            "the server did not answer within {REFRESH_TIMEOUT_MS} ms"
        ))
    })??;
    Ok(Summary::from_json(&agents, &tasks, &locks))
}

fn paths(config: &Config, args: &TopArgs) -> Paths {
    let tasks = match &args.session {
        Some(session) => format!("/v1/tasks?session={}", encode_segment(session)),
        None => "/v1/tasks".to_owned(),
    };
    Paths {
        agents: with_branch(config, "/v1/agents".to_owned()),
        tasks: with_branch(config, tasks),
        locks: with_branch(config, "/v1/locks".to_owned()),
    }
}

/// `path` with `branch=` added when `--branch` was given.
fn with_branch(config: &Config, path: String) -> String {
    match config.branch_param() {
        Some(branch) if path.contains('?') => format!("{path}&{branch}"),
        Some(branch) => format!("{path}?{branch}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_other_keys_do_not() {
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }

    #[test]
    fn refreshes_are_coalesced_and_spaced() {
        let start = Instant::now();
        let mut refresh = Refresh::new(start);
        assert!(!refresh.is_due(start), "nothing changed yet");
        refresh.dirty = true;
        assert!(refresh.is_due(start));
        refresh.start(start);
        refresh.dirty = true;
        assert!(!refresh.is_due(start), "one refresh at a time");
        refresh.finish(true, start);
        assert!(!refresh.is_due(start), "too soon after the last start");
        let later = start + Duration::from_millis(REFRESH_INTERVAL_MS_MIN);
        assert!(refresh.is_due(later));
    }

    #[test]
    fn a_failed_refresh_is_retried_later() {
        let start = Instant::now();
        let mut refresh = Refresh::new(start);
        refresh.dirty = true;
        refresh.start(start);
        refresh.finish(false, start);
        assert!(!refresh.is_due(start + Duration::from_millis(REFRESH_INTERVAL_MS_MIN)));
        assert!(refresh.is_due(start + Duration::from_millis(REFRESH_RETRY_MS)));
    }
}
