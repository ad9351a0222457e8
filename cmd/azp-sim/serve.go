package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// serve runs the simulator; build-package builds fake agent packages.

func (a *app) serve(args []string) error {
	fs := a.flags("serve")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	org := fs.String("org", "sim", "organisation name (first path segment of the org URL)")
	var pools, tokens, versions multiFlag
	fs.Var(&pools, "pool", "pool name (repeatable; default Default)")
	fs.Var(&tokens, "token", "PAT with manage scope (repeatable; also $AZP_SIM_TOKEN)")
	fs.Var(&versions, "package-version", "register fake agent packages of this version for linux-x64, linux-arm64, linux-musl-x64, linux-musl-arm64 (repeatable)")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a generated certificate")
	caOut := fs.String("ca-out", "", "with --tls: write the CA certificate (PEM) to this file")
	filler := fs.Int64("filler-bytes", 0, "filler bytes per package")
	pkgDir := fs.String("package-dir", "", "where packages are built (default: a temporary directory)")
	poll := fs.Duration("poll-timeout", 0, "long-poll length of GET messages (default the simulator's)")
	offline := fs.Duration("offline-after", 0, "agent offline this long after its last poll (default the simulator's)")
	verbose := fs.Bool("v", false, "log requests to stderr")
	ecs := ecsFlags(fs) // local ECS control plane (ecs.go)
	if err := fs.Parse(args); err != nil {
		return err
	}
	toks := map[string]string{}
	for _, t := range tokens {
		toks[t] = sim.ScopeManage
	}
	if t := os.Getenv("AZP_SIM_TOKEN"); t != "" {
		toks[t] = sim.ScopeManage
	}
	opts := sim.Options{Org: *org, Pools: pools, Addr: *addr, TLS: *useTLS, Tokens: toks, PollTimeout: *poll, OfflineAfter: *offline}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(a.err, nil))
	}
	srv := sim.New(opts)
	orgURL, err := srv.Start()
	if err != nil {
		return fmt.Errorf("start simulator on %s: %w", *addr, err)
	}
	defer srv.Close()
	defer ecs.mustStart(srv, tokens, pools)()
	if len(versions) > 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		dir := *pkgDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "azp-sim-packages-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		}
		for _, v := range versions {
			for _, p := range pkgbuild.Platforms {
				res, err := pkgbuild.Build(pkgbuild.Options{Version: v, Platform: p, AgentBinary: self, OutDir: dir, FillerBytes: *filler})
				if err != nil {
					return err
				}
				if err := srv.AddPackage(sim.PackageSpec{Version: v, Platform: p, FilePath: res.Path, SHA256: res.SHA256, Filename: res.Filename}); err != nil {
					return fmt.Errorf("register package %s: %w", res.Filename, err)
				}
			}
		}
	}
	fmt.Fprintln(a.out, orgURL)
	fmt.Fprintf(a.err, "azp-sim: organisation URL %s, control API %s/_sim/\n", orgURL, srv.URL())
	if *useTLS && *caOut != "" {
		if err := os.WriteFile(*caOut, srv.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("write --ca-out: %w", err)
		}
		fmt.Fprintf(a.err, "azp-sim: CA certificate in %s\n", *caOut)
	}
	ctx, stop := a.stopContext()
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(a.err, "azp-sim: stopping")
	return nil
}

func (a *app) buildPackage(args []string) error {
	fs := a.flags("build-package")
	version := fs.String("version", "", "agent version, e.g. 4.261.0 (required)")
	platform := fs.String("platform", "linux-x64", "platform (runtime identifier)")
	out := fs.String("out", ".", "output directory")
	filler := fs.Int64("filler-bytes", 0, "filler bytes")
	fillerDir := fs.String("filler-dir", "", "directory tree to include as filler")
	variant := fs.String("variant", "", "bad variant: "+variantNames())
	binary := fs.String("agent-binary", "", "fake agent binary (default: this executable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*binary = self
	}
	res, err := pkgbuild.Build(pkgbuild.Options{Version: *version, Platform: *platform, AgentBinary: *binary, OutDir: *out,
		FillerBytes: *filler, FillerDir: *fillerDir, Variant: pkgbuild.Variant(*variant)})
	if err != nil {
		return err
	}
	return json.NewEncoder(a.out).Encode(res)
}

func variantNames() string {
	var n []string
	for _, v := range pkgbuild.Variants {
		n = append(n, string(v))
	}
	return strings.Join(n, ", ")
}
