//! Reports read off the models' state: what the teaching commands show (`explain`,
//! `map`, `view`).

pub mod teach;
