//! PowerShell that azssh sends to Windows guests, and parsers for its results.
