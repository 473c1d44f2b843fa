//! Reports: what a replay shows a reader, built on the one driver loop (`replay::drive`)
//! and the checkers' models. Each report is a module here, beside the others:
//!
//! ```text
//!   trace ──> replay (driver, models) ──> check (comparison rules) ──> report
//!                                                                      ├─ stats: sys._debugmallocstats()
//!                                                                      └─ (compare tables, maps, the page)
//! ```
//! A report reads the models' state; it never changes how a replay runs.

pub mod stats;

pub use stats::{stats_at, StatsAt};
