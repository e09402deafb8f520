//! Contacts (not built yet; see issue 4): contacts, custom attributes, tags, groups, segments, CSV
//! import/export and the `Directory` facade that messaging uses to resolve recipients in batches.
