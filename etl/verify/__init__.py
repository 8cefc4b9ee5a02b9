"""`ultravox-archiver verify`: reconcile the source and the archive for a window, without audio."""
