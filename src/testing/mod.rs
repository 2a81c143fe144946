//! Support shared by the unit tests of several modules, built only for
//! tests (`#[cfg(test)]` in `lib.rs`): `hostile.rs`, the generated input of
//! the parsers' property tests. Nothing here may be used by the library
//! itself, and nothing here states a property: each parser's own test
//! module does.

pub mod hostile;
