//! postline: SMTP client.
