//! The PostgreSQL backend (postgres + r2d2 pool), driven from blocking threads.
