//! Fault tests: the real binary against private PostgreSQL clusters that each test stops,
//! restarts, locks, makes read-only or fills, to show what clients see and what is stored.

mod checks;
mod cluster;
mod server;

mod crash;
mod outage;
mod storage;
mod timeouts;
