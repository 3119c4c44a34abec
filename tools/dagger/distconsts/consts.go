// Package distconsts is this project's stand-in for github.com/dagger/dagger/engine/distconsts,
// a nested module of the Dagger repository that the Go module proxy reachable here does not
// serve at any version (403 for v0.21.6…v0.21.9 and for the release commit's pseudo-version).
//
// It is not a copy of Dagger's file: it declares the names the engine and CLI packages of
// github.com/dagger/dagger v0.21.8 reference (found with `grep -rhoE 'distconsts\.[A-Za-z]+'`
// over the module) with the values of the engine image that scripts/dagger-engine.sh builds —
// the layout contract between that image and the binaries built by tools/dagger.
package distconsts

// Where the CLI finds the engine, and the container name it would give one it starts itself.
const (
	EngineContainerName   = "dagger-engine.dev"
	DefaultEngineSockAddr = "unix:///run/dagger/engine.sock"
)

// The engine image layout (scripts/dagger-engine.sh puts these files there).
const (
	RuncPath                           = "/usr/local/bin/runc"
	DaggerInitPath                     = "/usr/local/bin/dagger-init"
	EngineDefaultStateDir              = "/var/lib/dagger"
	EngineContainerBuiltinContentDir   = "/usr/local/share/dagger/content"
	EngineCustomCACertsDir             = "/usr/local/share/ca-certificates"
	GoSDKManifestDigestEnvName         = "DAGGER_GO_SDK_MANIFEST_DIGEST"
	PythonSDKManifestDigestEnvName     = "DAGGER_PYTHON_SDK_MANIFEST_DIGEST"
	TypescriptSDKManifestDigestEnvName = "DAGGER_TYPESCRIPT_SDK_MANIFEST_DIGEST"
	OCIVersionAnnotation               = "org.opencontainers.image.version"
)

// Images the engine uses for `Container.terminal` and the builtin Go SDK only; this project uses
// neither (nothing pulls them here).
const (
	AlpineVersion  = "3.22.1"
	AlpineImage    = "alpine:" + AlpineVersion
	GolangVersion  = "1.26.1"
	GolangImage    = "golang:" + GolangVersion + "-alpine"
	BusyboxVersion = "1.37.0"
	BusyboxImage   = "busybox:" + BusyboxVersion
)
