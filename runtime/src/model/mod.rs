//! One file per architecture family: how a family's layers are composed from backend ops.
