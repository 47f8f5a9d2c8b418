//! The probe against real sockets and the simulator, as one test binary:
//! health checks and discovery (`probe`), credentials and kubeconfigs
//! (`credentials`), `health_check.allowed_networks` (`egress`) and the
//! discovery of annotated Services (`services`).

mod credentials;
mod egress;
mod probe;
mod services;
