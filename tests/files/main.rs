//! The file input: rotation, truncation, copytruncate, deleted and renamed files, the
//! registry, slots, failed batches and draining, delivered to real outputs.
//! One test binary (`cargo test --release --test files`), one module per former test file;
//! `cargo test --release --test files <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod dir_fsync;
mod file_copy_beside_target;
mod file_copytruncate_ids;
mod file_cri_gzip_while_stopped;
mod file_cri_rotation;
mod file_cri_rotation_chain;
mod file_cri_rotation_failed;
mod file_delivery;
mod file_drain_incomplete;
mod file_failed_batches;
mod file_held_up_deleted;
mod file_input;
mod file_input_renamed;
mod file_lifecycle;
mod file_link_repointed;
mod file_metrics;
mod file_registry_damaged;
mod file_rotation;
mod file_slots_rotation;
mod file_streams;
mod file_truncation_restart;
mod file_two_processes;
mod file_waiting_compressed;
mod file_waiting_crash;
mod file_waiting_deleted;
mod file_waiting_rename;
mod pod;
