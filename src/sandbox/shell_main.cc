// thaw-shell: what a prepared jailed shell execs before it waits for its spawn request
// (SpawnerSetup::shell_exe), so that the start's own exec tears down this small static
// program instead of the shell's copy of the spawner. Not run by hand: its argv is the
// shell's descriptors (ShellExeMain).
#include "sandbox/shell.h"

int main(int argc, char** argv) { return thaw::sandbox::ShellExeMain(argc, argv); }
