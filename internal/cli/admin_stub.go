package cli

import (
	"context"
	"errors"
)

func checkCommand(context.Context, *streams, []string) error { return errors.New("not yet") }
func pruneCommand(context.Context, *streams, []string) error { return errors.New("not yet") }
