//! Channels (not built yet; see issue 5): channel CRUD, the encrypted credential vault, provider
//! adapters behind `ProviderAdapter`, inbound webhooks and channel health, exposed to messaging through
//! the `ChannelRegistry` facade.
