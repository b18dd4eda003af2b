// Probe functions (python3 handlers) that try what a hostile function would, shared by the
// containment tests as root (sandbox_test.cc) and rootless (rootless_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "server_fixture.h"

namespace thaw::testing {

// Event {"key": admin.key path, "data": data dir}. Returns what each attempt got: 'allowed' or
// the strerror, the pids it sees, its uid, effective capabilities and working directory.
inline constexpr char kHostProbe[] =
    "import ctypes, os\n"
    "def attempt(fn):\n"
    "    try:\n"
    "        fn(); return 'allowed'\n"
    "    except OSError as err:\n"
    "        return err.strerror\n"
    "def handler(e, c):\n"
    "    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    def unshare():\n"
    "        if libc.unshare(0x20000) != 0:\n"
    "            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n"
    "    status = open('/proc/self/status').read().splitlines()\n"
    "    return {\n"
    "      'admin_key': attempt(lambda: open(e['key']).read()),\n"
    "      'data_dir': attempt(lambda: os.listdir(e['data'])),\n"
    "      'write_task': attempt(lambda: open('/var/task/x', 'w')),\n"
    "      'read_etc': attempt(lambda: open('/etc/os-release').read()),\n"
    "      'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
    "      'uid': os.getuid(),\n"
    "      'cap_eff': [l.split()[1] for l in status if l.startswith('CapEff:')][0],\n"
    "      'unshare': attempt(unshare),\n"
    "      'task_root': os.getcwd(),\n"
    "    }\n";

// Returns its own AWS_LAMBDA_RUNTIME_API.
inline constexpr char kRuntimeApiVictim[] =
    "import os\ndef handler(e, c):\n"
    "    return os.environ['AWS_LAMBDA_RUNTIME_API']\n";

// Event {"api": host:port}: tries to take the next event from that Runtime API.
inline constexpr char kRuntimeApiThief[] =
    "import http.client\n"
    "def handler(e, c):\n"
    "    host, port = e['api'].split(':')\n"
    "    conn = http.client.HTTPConnection(host, int(port), timeout=3)\n"
    "    try:\n"
    "        conn.request('GET', '/2018-06-01/runtime/invocation/next')\n"
    "        return 'stole: ' + conn.getresponse().read().decode()\n"
    "    except Exception as err:\n"
    "        return 'refused: ' + type(err).__name__\n";

// With kRuntimeApiVictim deployed as "victim" and kRuntimeApiThief as "thief": asks the victim
// where its Runtime API listens (it then waits there for its next event), sends the thief to
// take that event, and returns what the thief got ("refused: ..." when it was kept out).
inline std::string StealVictimsEvent(const ThawServer& server) {
  auto victim = server.Invoke("victim");
  EXPECT_EQ(victim.status, 200) << victim.body;
  if (victim.body.size() < 2) return "no victim";
  const std::string api = victim.body.substr(1, victim.body.size() - 2);
  auto thief = server.Invoke("thief", "{\"api\":\"" + api + "\"}");
  EXPECT_EQ(thief.status, 200) << thief.body;
  return thief.body;
}

// Event {"port": the gateway's port}: connects to the gateway on loopback and to an address
// off this host, and lists its network interfaces and Runtime API address.
inline constexpr char kNetworkProbe[] =
    "import os, socket\n"
    "def connect(host, port):\n"
    "    try:\n"
    "        socket.create_connection((host, port), timeout=2).close(); return 'connected'\n"
    "    except OSError as err:\n"
    "        return err.strerror or type(err).__name__\n"
    "def handler(e, c):\n"
    "    return {\n"
    "      'gateway': connect('127.0.0.1', e['port']),\n"
    "      'outside': connect('192.0.2.1', 80),\n"
    "      'interfaces': [name for _, name in socket.if_nameindex()],\n"
    "      'api': os.environ['AWS_LAMBDA_RUNTIME_API'],\n"
    "    }\n";

}  // namespace thaw::testing
