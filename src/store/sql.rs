//! [`SqlStore`]: the one implementation of [`super::Store`], SQL written once.
