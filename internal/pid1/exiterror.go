package pid1

import "fmt"

// ExitError is Reaper.Run's error for a process that did not exit 0.
type ExitError struct {
	Path string
	Code int // exit status, or 128+n for a death by signal n
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited with code %d", e.Path, e.Code)
}
