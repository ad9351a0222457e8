package config

import (
	"reflect"
	"slices"
	"testing"
)

// credentialGroup are the settings resolveCredential reads as a whole instead of binding them to
// a field one by one.
var credentialGroup = []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID"}

// TestEveryDefinitionIsBound: each setting outside the credential group fills exactly one
// Settings field of the type its Kind parses to, and each tagged field has a definition, so a new
// setting cannot be declared and then silently ignored.
func TestEveryDefinitionIsBound(t *testing.T) {
	st := reflect.TypeFor[Settings]()
	fields := settingFields(st)
	for _, d := range Definitions() {
		index, ok := fields[d.Env]
		if slices.Contains(credentialGroup, d.Env) {
			if ok {
				t.Errorf("%s is resolved as a credential and also tagged on a field", d.Env)
			}
			continue
		}
		if !ok {
			t.Errorf("%s has no Settings field tagged `setting:%q`", d.Env, d.Env)
			continue
		}
		if f := st.FieldByIndex(index); f.Type != d.Kind.goType() {
			t.Errorf("%s: field %s is %v, its kind parses to %v", d.Env, f.Name, f.Type, d.Kind.goType())
		}
	}
	for env := range fields {
		if _, ok := Lookup(env); !ok {
			t.Errorf("field tagged %q has no definition", env)
		}
	}
}

// TestBindEmbedded: a struct embedded in the target binds its tagged fields too (the way a group
// of settings kept in its own file joins the table).
func TestBindEmbedded(t *testing.T) {
	type group struct {
		Once bool `setting:"AZP_ONCE"`
	}
	var target struct {
		group
		Pool string `setting:"AZP_POOL"`
	}
	errs := bind(&target, Definitions(), map[string]string{"AZP_ONCE": "true", "AZP_POOL": " Linux "})
	if len(errs) != 0 || !target.Once || target.Pool != "Linux" {
		t.Errorf("bind = %v, %+v", errs, target)
	}
}
