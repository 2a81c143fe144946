//! The notification intake: an HTTP server that receives the registry's
//! notification envelopes, filters them, stores kept events durably and wakes
//! the events job. It never does registry I/O.
