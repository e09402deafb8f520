//! Messaging (not built yet): messages, templates and their `{VARIABLE}` renderer, group messages with
//! resumable fan-out, scheduled messages with timezone-aware recurrence, the dispatch pipeline and
//! delivery status. Depends on contacts, channels and events; nothing depends on it.
