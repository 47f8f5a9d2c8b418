//! The probe against real sockets and the simulator, as one test binary:
//! health checks and discovery (`probe`), credentials and kubeconfigs
//! (`credentials`) and `health_check.allowed_networks` (`egress`).

mod credentials;
mod egress;
mod probe;
