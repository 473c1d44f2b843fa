//! Where the driver takes its events from: batches of [`Event`]s read from an
//! [`EventReader`] on this thread, or decoded on a second thread (for readers that can
//! move to one, such as the binary reader) while the model replays on this one.
//!
//! ```text
//!   Direct:    reader.next_events(buf) ─────────────────────────────> batch
//!   Threaded:  thread: reader.next_events(v) ──channel(4)──> batch ──spent──> back (8)
//! ```
//! The first event is read before the first batch so that the header (complete once an
//! event has been read) can be looked at before the replay chooses its model.

use crate::trace::{Event, EventKind, EventReader, TraceError, TraceHeader};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Events read in batches.
const BATCH: usize = 4096;

/// A placeholder event (buffers are filled before they are read).
const BLANK: Event = Event {
    kind: EventKind::Mark { index: 0 },
    line: 0,
};

/// Batches of events for the driver.
pub struct Source<'r> {
    inner: Inner<'r>,
    header: TraceHeader, // the trace's header, read with the first event
}

enum Inner<'r> {
    /// Read on this thread.
    Direct {
        reader: &'r mut dyn EventReader,
        buf: Vec<Event>,      // BATCH events; the first `n` are the current batch
        n: usize,             // events of the current batch
        first: Option<Event>, // the event read ahead (for the header), given first
    },
    /// Read on another thread: batches come through a channel, spent ones go back.
    Threaded {
        rx: Receiver<Result<Vec<Event>, TraceError>>,
        back: SyncSender<Vec<Event>>,
        cur: Vec<Event>, // the current batch
        started: bool,   // cur is no longer the read-ahead first event
    },
}

/// Reads the first event; the header is complete after it.
fn first_event(reader: &mut dyn EventReader) -> Result<Option<Event>, TraceError> {
    let mut first = [BLANK];
    let got = reader.next_events(&mut first)?;
    Ok((got == 1).then_some(first[0]))
}

impl<'r> Source<'r> {
    /// Events of `reader`, read on this thread.
    ///
    /// # Errors
    /// The first event cannot be read.
    pub fn new(reader: &'r mut dyn EventReader) -> Result<Source<'r>, TraceError> {
        let first = first_event(reader)?;
        let header = reader.header().clone();
        Ok(Source {
            inner: Inner::Direct {
                reader,
                buf: vec![BLANK; BATCH],
                n: 0,
                first,
            },
            header,
        })
    }

    /// Runs `f` on the events of `reader` decoded on a second thread.
    ///
    /// # Errors
    /// The first event cannot be read (later read errors reach `f` through the batches).
    pub fn threaded<T>(
        reader: &mut (dyn EventReader + Send),
        f: impl FnOnce(&mut Source) -> T,
    ) -> Result<T, TraceError> {
        let first = first_event(reader)?;
        let header = reader.header().clone();
        Ok(std::thread::scope(|scope| {
            let (tx, rx) = sync_channel::<Result<Vec<Event>, TraceError>>(4);
            let (back, spare) = sync_channel::<Vec<Event>>(8);
            let rd = &mut *reader;
            scope.spawn(move || loop {
                let mut v = spare.try_recv().unwrap_or_default();
                v.resize(BATCH, BLANK);
                match rd.next_events(&mut v) {
                    Ok(0) => break,
                    Ok(n) => {
                        v.truncate(n);
                        if tx.send(Ok(v)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            });
            let mut src = Source {
                inner: Inner::Threaded {
                    rx,
                    back,
                    cur: first.map(|e| vec![e]).unwrap_or_default(),
                    started: first.is_none(),
                },
                header,
            };
            f(&mut src)
            // src dropped here: the channel closes and the decoding thread stops
        }))
    }

    /// The trace's header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The next batch; empty at the end.
    pub(crate) fn next_batch(&mut self) -> Result<&[Event], TraceError> {
        match &mut self.inner {
            Inner::Direct {
                reader,
                buf,
                n,
                first,
            } => {
                if let Some(e) = first.take() {
                    buf[0] = e;
                    *n = 1;
                } else {
                    *n = reader.next_events(buf)?;
                }
                Ok(&buf[..*n])
            }
            Inner::Threaded {
                rx,
                back,
                cur,
                started,
            } => {
                if !*started {
                    *started = true;
                    return Ok(&cur[..]);
                }
                let spent = std::mem::take(cur);
                if spent.capacity() >= BATCH {
                    let _ = back.try_send(spent);
                }
                match rx.recv() {
                    Ok(Ok(v)) => *cur = v,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {} // the reader is done: an empty batch ends the replay
                }
                Ok(&cur[..])
            }
        }
    }
}
