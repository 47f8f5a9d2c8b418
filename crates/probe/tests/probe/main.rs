//! The probe against real sockets and the simulator, as one test binary:
//! health checks and discovery (`probe`), credentials and kubeconfigs
//! (`credentials`), `health_check.allowed_networks` (`egress`), the edge
//! node check over HTTPS (`node_check`) and the discovery of annotated
//! Services (`services`).

mod credentials;
mod egress;
mod node_check;
mod probe;
mod services;
