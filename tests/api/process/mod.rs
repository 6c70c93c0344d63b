//! The server as a process: the real `chatbox` and `chatbox-load` binaries, the maintenance commands, a
//! crash (SIGKILL) and a database process killed and restarted under it, and graceful shutdown.

mod binary;
mod cli;
pub mod cluster;
mod cluster_faults;
mod cluster_shards;
mod crash;
mod load_tool;
mod recovery;
mod shutdown;
