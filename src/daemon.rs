//! The daemon: wires configuration, store, registry client, intake and
//! scheduler together, waits for the database, and runs until a signal.
//! Owns start-up order and shutdown; no job logic lives here.
