//! Shared test support: starts real servers (PostgreSQL, docker-registry) in
//! temp dirs on 127.0.0.1, runs the real binary, and cleans up every process
//! it started, also when a test fails. Each concern has its own file.
#![allow(dead_code)]

pub mod bench;
pub mod cli;
pub mod fault_proxy;
pub mod postgres;
pub mod postgres_tls;
pub mod registry;
pub mod scanners;
