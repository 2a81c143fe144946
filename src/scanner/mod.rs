//! Vulnerability scanner clients, one file per API (Clair v2, Clair v4, the
//! Harbor scanner-adapter API, a fixture file). Pure report parsers live
//! beside the HTTP code and are unit tested on literal inputs.
