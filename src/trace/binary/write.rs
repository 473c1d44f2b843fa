//! The binary format's encoder: events in, tagged varint records out (see the format
//! in [`binary`](super)).

use super::super::{Event, TraceHeader};
use super::{zigzag, TAG_END, TAG_LINE, TAG_TEXT};
use super::{MAGIC, VERSION};
use crate::addr::Addr;
use crate::trace::io::MAX_LINE;
use std::io::{self, Write};

/// Writes events in the binary format.
pub struct BinaryWriter<W: Write> {
    out: W,
    buf: Vec<u8>,   // encoded bytes not yet written (flushed at 64 KiB)
    last_addr: u64, // the address register: the last address encoded
    line: u64,      // the line of the last event
    events: u64,    // events written
}

impl<W: Write> BinaryWriter<W> {
    /// Starts a binary trace on `out`: magic, version, header.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn new(mut out: W, header: &TraceHeader) -> io::Result<BinaryWriter<W>> {
        let mut w = BinaryWriter {
            out: {
                out.write_all(MAGIC)?;
                out.write_all(&[VERSION])?;
                out
            },
            buf: Vec::with_capacity(1 << 16),
            last_addr: 0,
            line: 0,
            events: 0,
        };
        w.varint(header.lines.len() as u64);
        for l in &header.lines {
            w.varint(l.len() as u64);
            w.buf.extend_from_slice(l.as_bytes());
        }
        Ok(w)
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn addr(&mut self, a: Addr) {
        let d = a.0.wrapping_sub(self.last_addr) as i64;
        self.last_addr = a.0;
        self.varint(zigzag(d));
    }

    pub(super) fn tag(&mut self, code: u8) {
        self.buf.push(code);
    }

    // The field codecs of the record table (see `records!`): v varint, z (and n) zigzag
    // varint, a address, idx mark index.
    pub(super) fn v(&mut self, x: u64) {
        self.varint(x);
    }

    pub(super) fn z(&mut self, x: i64) {
        self.varint(zigzag(x));
    }

    pub(super) fn n(&mut self, x: i64) {
        self.z(x);
    }

    pub(super) fn a(&mut self, x: Addr) {
        self.addr(x);
    }

    pub(super) fn idx(&mut self, x: u32) {
        self.varint(u64::from(x));
    }

    /// Appends one event.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn write_event(&mut self, e: &Event) -> io::Result<()> {
        if e.line != self.line.wrapping_add(1) {
            self.buf.push(TAG_LINE);
            self.varint(e.line);
        }
        self.line = e.line;
        self.record(e.kind);
        self.events += 1;
        if self.buf.len() >= 1 << 16 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Appends a line that carries no event (a comment, a trailer line, a mark's text),
    /// as read, at `line`.
    ///
    /// # Errors
    /// The output's write errors; a text longer than [`MAX_LINE`] bytes.
    pub fn write_text(&mut self, line: u64, text: &str) -> io::Result<()> {
        if text.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("line {line}: longer than {MAX_LINE} bytes"),
            ));
        }
        if line != self.line.wrapping_add(1) {
            self.buf.push(TAG_LINE);
            self.varint(line);
        }
        self.line = line;
        self.buf.push(TAG_TEXT);
        self.varint(text.len() as u64);
        self.buf.extend_from_slice(text.as_bytes());
        if self.buf.len() >= 1 << 16 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the end record and flushes; returns the output.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.push(TAG_END);
        self.varint(self.events);
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
