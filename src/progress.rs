//! The progress spinner of long replays (`check`, `replay`): shown only when the caller
//! asks — the CLI asks only when stderr is a terminal — so piped runs stay quiet.

/// A spinner counting events, or nothing when not asked for.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A spinner labelled `what` when `enabled`, else a no-op.
    pub fn new(enabled: bool, what: &str) -> Progress {
        Progress(enabled.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {human_pos} events, {elapsed}",
            ) {
                b.set_style(style);
            }
            b.set_message(what.to_string());
            b
        }))
    }

    /// Shows `events` read, sampled every 65,536 so the hot loop pays one test.
    #[inline]
    pub fn tick(&self, events: u64) {
        if events & 0xffff == 0 {
            self.set(events);
        }
    }

    /// Shows `events` read.
    pub fn set(&self, events: u64) {
        if let Some(b) = &self.0 {
            b.set_position(events);
        }
    }

    /// Clears the spinner from the terminal.
    pub fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}
