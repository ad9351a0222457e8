package exit

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	base := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"unmarked", base, Failure},
		{"cancelled", context.Canceled, Failure},
		{"config", Config(base), Usage},
		{"auth", Auth(base), Denied},
		{"runtime", Runtime(base), Failure},
		{"wrapped config", fmt.Errorf("resolve: %w", Config(base)), Usage},
		{"joined: the first mark wins", errors.Join(Auth(base), Config(base)), Denied},
		// A caller that knows better re-marks: a refused token at deregistration is a runtime failure.
		{"outermost mark decides", Runtime(fmt.Errorf("deregister: %w", Auth(base))), Failure},
		{"inner config under plain wrap", fmt.Errorf("a: %w", fmt.Errorf("b: %w", Config(base))), Usage},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("%s: Code = %d, want %d", tc.name, got, tc.want)
		}
	}
	if !errors.Is(Config(base), ErrConfig) || !errors.Is(Config(base), base) || Config(nil) != nil {
		t.Error("marks must keep the cause and match their sentinel")
	}
	if Config(base).Error() != "boom" {
		t.Error("a mark must not change the message")
	}
}
