package image

// Progress is one progress report of a pull, for the user who waits on
// it: Phase "resolving", "exporting", "downloading" (per layer: Layer,
// Done, Total bytes), "squashing" and "done", and "note" for what the user
// must know at once (Message).
type Progress struct {
	Phase   string
	Layer   string
	Done    int64
	Total   int64
	Message string
}
