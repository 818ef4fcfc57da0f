//! The session state machine. (Being written.)

/// Placeholder.
pub struct Session;
/// Placeholder.
pub struct SessionConfig;
/// Placeholder.
pub enum SessionError {}
/// Placeholder.
pub enum Event {}
/// Placeholder.
pub enum Phase {}
/// Placeholder.
pub struct Outbox;
