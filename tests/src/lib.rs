//! Test harness shared by molten's integration and end-to-end suites.
