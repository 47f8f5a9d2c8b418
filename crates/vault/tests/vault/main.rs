//! The vault through its public API, as one test binary: sealing, opening,
//! rotation and redaction (`envelope`), key files (`keyfile`) and property
//! tests (`proptests`).

mod envelope;
mod keyfile;
mod proptests;
