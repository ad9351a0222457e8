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
		// A type of another package that unwraps to a sentinel (config.Error) is marked with it.
		{"bare type unwrapping to ErrConfig", unwrapsTo{ErrConfig}, Usage},
		{"bare type unwrapping to ErrAuth, wrapped", fmt.Errorf("x: %w", unwrapsTo{ErrAuth}), Denied},
		{"re-marked bare type", Runtime(unwrapsTo{ErrConfig}), Failure},
		{"joined: a deeper first part still comes first", errors.Join(fmt.Errorf("a: %w", Config(base)), Runtime(base)), Usage},
		{"joined: unmarked parts are skipped", errors.Join(base, Auth(base)), Denied},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("%s: Code = %d, want %d", tc.name, got, tc.want)
		}
	}
	if !errors.Is(Config(base), ErrConfig) || !errors.Is(Config(base), base) || Config(nil) != nil {
		t.Error("marks must keep the cause and match their sentinel")
	}
	if !errors.Is(unwrapsTo{ErrConfig}, ErrConfig) {
		t.Error("errors.Is must see the sentinel")
	}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{base, ErrRuntime}, {Auth(base), ErrAuth}, {unwrapsTo{ErrConfig}, ErrConfig}, {Runtime(Auth(base)), ErrRuntime},
	} {
		if got := Code(OrRuntime(tc.err)); got != Code(mark(tc.want, base)) {
			t.Errorf("OrRuntime(%v): code %d, want that of %v", tc.err, got, tc.want)
		}
	}
	if OrRuntime(nil) != nil {
		t.Error("OrRuntime(nil) must be nil")
	}
	if Config(base).Error() != "boom" {
		t.Error("a mark must not change the message")
	}
}

// unwrapsTo is an error type of another package that marks itself by unwrapping to a sentinel,
// as config.Error does.
type unwrapsTo struct{ kind error }

func (e unwrapsTo) Error() string { return "bad setting" }
func (e unwrapsTo) Unwrap() error { return e.kind }
