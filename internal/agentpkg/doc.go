// Package agentpkg puts a complete Azure Pipelines agent package into the agent directory: it
// picks the platform, chooses a version (an installed one first, with no network), downloads it
// with resumable retries while verifying the server's SHA-256, and extracts it in the same pass,
// safely and atomically, optionally through a cache shared by many containers (for example on EFS).
//
// Layout of an installed agent directory:
//
//	<dir>/bin, externals, *.sh, license.html   the package's top-level entries
//	<dir>/.azp-package.json                     the marker, written last: "a complete package is here"
//	<dir>/.pkg-<version>.tmp-*                  transient, only while installing; removed on any exit
//
// The marker is removed before anything of an older package is replaced and written only after
// every entry is in place, so a half-written tree is never taken for an installed package. The
// agent's self-update later replaces bin with a symlink bin -> bin.<version>; Marker.Current
// reports that version, and a pin (AZP_AGENT_VERSION) is compared with it. Entries the agent
// writes later (.agent, .credentials, _work, _diag) are never touched; top-level entries of an
// older package that the new one lacks are left in place. One installer at a time per agent
// directory: an install removes leftovers of interrupted ones.
//
// Layout of the shared cache (AZP_AGENT_CACHE):
//
//	<cache>/vsts-agent-<platform>-<version>.tar.gz         published by rename, never written in place
//	<cache>/vsts-agent-<platform>-<version>.tar.gz.sha256  hash recorded at publication
//	<cache>/.lock                                          flock held while one container downloads
//	<cache>/.tmp-*                                         transient
//
// This package must never extract an entry outside the target directory, follow a symlink while
// writing, trust a package whose hash does not match, leave a tree that looks complete but is not,
// or send credentials anywhere it was not asked to (Options.Authorize decides).
package agentpkg
