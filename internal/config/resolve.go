package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// Env looks up an environment variable.
type Env func(string) (string, bool)

// OSEnv is the process environment.
func OSEnv(name string) (string, bool) { return os.LookupEnv(name) }

// SecretFetcher returns the raw SecretString of a Secrets Manager secret.
type SecretFetcher func(ctx context.Context, secretID string) (string, error)

// FlagSet registers every setting as a flag on fs and returns the function that reports the values
// given on the command line. Subcommands add their own flags to the same set.
func FlagSet(fs *flag.FlagSet) func() map[string]string {
	given := map[string]string{}
	for _, d := range definitions {
		d := d
		fs.Var(&flagValue{def: d, given: given}, d.Flag, d.Usage+" ["+d.Env+"]")
	}
	return func() map[string]string { return given }
}

type flagValue struct {
	def   Definition
	given map[string]string
}

func (f *flagValue) String() string {
	if f == nil || f.given == nil {
		return ""
	}
	if v := f.given[f.def.Env]; v != "" && f.def.Secret {
		return masked // the flag package prints values in its own messages
	}
	return f.given[f.def.Env]
}
func (f *flagValue) Set(v string) error { f.given[f.def.Env] = v; return nil }

// IsBoolFlag lets `--once` stand alone, as with Microsoft's start.sh (`docker run IMAGE --once`).
func (f *flagValue) IsBoolFlag() bool { return f.def.Kind == KindBool }

// Options are the inputs of Resolve.
type Options struct {
	Flags  map[string]string // by env name, from FlagSet
	Env    Env
	Secret SecretFetcher // required only when AZP_SECRET_ID resolves to a value
}

// Resolve applies flag > environment > secret JSON key > default to every setting and validates.
//
// A value that is empty or only blanks counts as unset at every level (flag, environment, secret
// key), as start.sh's ${AZP_POOL:-Default} does: compose files and task definitions often carry
// `AZP_POOL=` for "not set", and a blank token or pool is never meant literally.
func Resolve(ctx context.Context, o Options) (*Settings, error) {
	if o.Env == nil {
		o.Env = OSEnv
	}
	raw := map[string]string{}
	sources := map[string]string{}
	for _, d := range definitions {
		if v, ok := o.Flags[d.Env]; ok && strings.TrimSpace(v) != "" {
			raw[d.Env], sources[d.Env] = v, "flag"
		} else if v, ok := lookupEnv(o.Env, d); ok {
			raw[d.Env], sources[d.Env] = v, "env"
		}
	}

	s := &Settings{Sources: sources}
	var secretVals map[string]string
	if id := strings.TrimSpace(raw["AZP_SECRET_ID"]); id != "" {
		if o.Secret == nil {
			return nil, exit.Config(invalid(def("AZP_SECRET_ID"), id, "no Secrets Manager client is available to this command", "unset AZP_SECRET_ID or pass the credentials directly"))
		}
		text, err := o.Secret(ctx, id)
		if err != nil {
			// The fetcher marks the kind (not found: configuration; denied: authentication).
			return nil, err
		}
		vals, warnings, err := ParseSecret(text)
		if err != nil {
			return nil, fmt.Errorf("AZP_SECRET_ID %q: %w", id, err)
		}
		secretVals = vals
		s.Warnings = append(s.Warnings, warnings...)
	}

	// The token sources are resolved as a whole below (several may be set, and the first wins with
	// a warning); every other secret key fills what flag and environment left open.
	for _, d := range definitions {
		if !d.FromSecret {
			continue
		}
		if _, set := raw[d.Env]; set {
			continue
		}
		if v, ok := secretVals[d.Env]; ok {
			if d.Env != "AZP_TOKEN" {
				raw[d.Env] = v
			}
			sources[d.Env] = "secret"
		}
	}
	for _, d := range definitions {
		if _, set := sources[d.Env]; !set && d.Default != "" {
			raw[d.Env], sources[d.Env] = d.Default, "default"
		}
	}
	if err := s.fill(raw, secretVals); err != nil {
		return nil, err
	}
	return s, nil
}

// lookupEnv reads a setting's variable, then its aliases; blank values count as unset.
func lookupEnv(env Env, d Definition) (string, bool) {
	for _, name := range append([]string{d.Env}, d.Aliases...) {
		if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
			return v, true
		}
	}
	return "", false
}

func def(env string) Definition {
	d, ok := Lookup(env)
	if !ok {
		panic("config: no definition for " + env)
	}
	return d
}

func (s *Settings) fill(raw, secretVals map[string]string) error {
	secrets := secretValues(raw, secretVals)
	s.Secrets = append(s.Secrets, secrets...)
	errs := bind(s, definitions, raw)
	credErr := s.resolveCredential(raw, secretVals)
	if len(errs) == 0 && credErr == nil {
		return nil
	}
	all := make([]error, 0, len(errs)+1)
	for _, e := range errs {
		e.Value = scrub(e.Value, secrets)
		if slices.Contains(urlSettings, e.Setting) {
			e.Value = redact.URL(e.Value)
		}
		all = append(all, e)
	}
	if credErr != nil {
		all = append(all, credErr)
	}
	return exit.Config(errors.Join(all...))
}

// bind parses each definition's text in raw by its Kind into the field of target (a pointer to a
// struct) tagged `setting:"ENV"`, also inside embedded structs, then runs the definition's Check.
// A setting left unset keeps the field's zero value; a definition without a tagged field is left
// to the caller (the credentials are resolved as a group).
func bind(target any, defs []Definition, raw map[string]string) []*Error {
	v := reflect.ValueOf(target).Elem()
	fields := settingFields(v.Type())
	var errs []*Error
	for _, d := range defs {
		index, ok := fields[d.Env]
		if !ok {
			continue
		}
		text := strings.TrimSpace(raw[d.Env])
		if text == "" {
			if d.Required != "" {
				errs = append(errs, invalid(d, "", "required", d.Required))
			}
			continue
		}
		val, err := d.Kind.parse(d, text)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v.FieldByIndex(index).Set(reflect.ValueOf(val))
		if d.Check != nil {
			if problem, fix := d.Check(text, val); problem != "" {
				errs = append(errs, invalid(d, text, problem, fix))
			}
		}
	}
	return errs
}

// settingFields maps each `setting:"ENV"` tag of struct type t, and of the structs it embeds, to
// the field's index path.
func settingFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		if env, ok := f.Tag.Lookup("setting"); ok {
			out[env] = f.Index
		}
	}
	return out
}
