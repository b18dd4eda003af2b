// https webhooks against real local TLS receivers, with a throwaway CA made by the openssl CLI:
// a receiver whose certificate chains to the CA given as webhook_ca_file and names the URL's
// host gets the signed record; one with a self-signed certificate (an untrusted chain) or a
// certificate for another name is refused at the handshake, the post is retried, and the
// failure record that was never delivered leaves its event a dead letter.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <fstream>

#include "server_fixture.h"
#include "webhook_receiver.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

void OpenSsl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  for (std::string& a : args) {
    if (a.find('/') == std::string::npos && (a.ends_with(".pem") || a.ends_with(".key") ||
                                             a.ends_with(".csr") || a.ends_with(".ext"))) {
      a = dir + "/" + a;
    }
  }
  ProcessResult r = RunProcess(args, nullptr);
  ASSERT_EQ(r.exit_code, 0) << args[1] << ": " << r.err;
}

// In `dir`: ca.pem (the private CA), good.pem (localhost and 127.0.0.1, signed by it),
// wrong.pem (other.example only, signed by it) and self.pem (localhost, self-signed), each
// with its .key.
void MakeCertificates(const std::string& dir) {
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                       "-nodes"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin() + 2, ec.begin(), ec.end());
    return args;
  };
  OpenSsl(dir, with({"req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
                     "/CN=thaw test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                     "keyUsage=critical,keyCertSign,cRLSign"}));
  for (const auto& [name, san] :
       {std::pair<std::string, std::string>{"good", "DNS:localhost,IP:127.0.0.1"},
        {"wrong", "DNS:other.example"}}) {
    std::ofstream(dir + "/" + name + ".ext")
        << "subjectAltName=" << san << "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    OpenSsl(dir, with({"req", "-new", "-keyout", name + ".key", "-out", name + ".csr", "-subj",
                       "/CN=" + name}));
    OpenSsl(dir,
            {"x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext"});
  }
  OpenSsl(dir,
          with({"req", "-x509", "-keyout", "self.key", "-out", "self.pem", "-days", "2", "-subj",
                "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"}));
}

std::string StateOf(const ThawServer& server, const std::string& name, const std::string& id) {
  auto r = server.Call("GET", "/v1/functions/" + name + "/events?limit=100");
  if (r.status != 200) return "";
  const json::value page = json::parse(r.body);
  for (const auto& e : page.as_object().at("events").as_array()) {
    if (e.as_object().at("id").as_string() == id) {
      return std::string(e.as_object().at("state").as_string());
    }
  }
  return "";
}

class WebhookTlsTest : public ServerTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-webhook-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    certs_ = tmpl;
    ASSERT_NO_FATAL_FAILURE(MakeCertificates(certs_));
    server_ = ThawServer::Start({"--async-retry-base-ms", "20", "--webhook-private-addresses",
                                 "true", "--webhook-ca-file", certs_ + "/ca.pem"});
  }
  void TearDown() override {
    ServerTest::TearDown();
    RemoveDir(certs_);
  }
  TlsFiles Tls(const std::string& name) const {
    return TlsFiles{certs_ + "/" + name + ".pem", certs_ + "/" + name + ".key"};
  }
  std::string EventInvoke(const std::string& name) {
    auto r = server_->Call("POST", "/2015-03-31/functions/" + name + "/invocations", R"({"n":7})",
                           {{"X-Amz-Invocation-Type", "Event"}});
    EXPECT_EQ(r.status, 202) << r.body;
    return r.Header("x-amzn-requestid");
  }
  std::string certs_;
};

TEST_F(WebhookTlsTest, TrustedCertificateGetsTheSignedRecord) {
  WebhookReceiver hook(Tls("good"));
  DeployPython("echoer", "def handler(event, context):\n    return {'echo': event}\n",
               "on_success: " + hook.url("/hook", "localhost") + "\n");
  const std::string secret =
      JsonField(server_->Call("GET", "/v1/functions/echoer").body, "webhook_secret");
  ASSERT_FALSE(secret.empty());
  const std::string id = EventInvoke("echoer");
  ASSERT_TRUE(hook.WaitFor([](const auto& r) { return !r.empty(); }, 30'000)) << server_->Output();
  const ReceivedRequest req = hook.requests().front();
  EXPECT_EQ(req.headers.at("x-thaw-signature"), WebhookReceiver::Sign(secret, req.body));
  const json::object record = json::parse(req.body).as_object();
  EXPECT_EQ(record.at("requestContext").at("requestId").as_string(), id);
  EXPECT_EQ(record.at("responsePayload").at("echo").at("n").as_int64(), 7);
  EXPECT_EQ(hook.handshake_failures(), 0);
}

// The chain is verified (a self-signed certificate is not trusted, though it names the host),
// and so is the name (a certificate from the trusted CA for another host is refused).
TEST_F(WebhookTlsTest, UntrustedChainOrWrongNameIsRefusedRetriedAndDeadLettered) {
  WebhookReceiver self_signed(Tls("self"));
  WebhookReceiver wrong_name(Tls("wrong"));
  const std::string code = "def handler(event, context):\n    raise ValueError('no')\n";
  DeployPython("selfsigned", code, "on_failure: " + self_signed.url("/hook", "localhost") + "\n");
  DeployPython("wrongname", code, "on_failure: " + wrong_name.url("/hook", "localhost") + "\n");
  for (const std::string name : {"selfsigned", "wrongname"}) {
    ASSERT_EQ(server_
                  ->Call("PUT", "/2019-09-25/functions/" + name + "/event-invoke-config",
                         R"({"MaximumRetryAttempts":0})")
                  .status,
              200);
  }
  const std::string a = EventInvoke("selfsigned");
  const std::string b = EventInvoke("wrongname");
  // Every try of the 8 is refused at the handshake; then the record is given up and each
  // event is a dead letter again.
  EXPECT_TRUE(Eventually([&] { return StateOf(*server_, "selfsigned", a) == "failed"; }, 60'000))
      << StateOf(*server_, "selfsigned", a);
  EXPECT_TRUE(Eventually([&] { return StateOf(*server_, "wrongname", b) == "failed"; }, 60'000))
      << StateOf(*server_, "wrongname", b);
  EXPECT_EQ(self_signed.handshake_failures(), 8);
  EXPECT_EQ(wrong_name.handshake_failures(), 8);
  EXPECT_TRUE(self_signed.requests().empty());
  EXPECT_TRUE(wrong_name.requests().empty());
  EXPECT_TRUE(server_->WaitForOutput("given up after 8 tries", 10'000)) << server_->Output();
  EXPECT_NE(server_->Output().find("certificate verify failed"), std::string::npos)
      << server_->Output();
}

TEST(WebhookTlsConfigTest, UnreadableCaFileStopsTheServerWithItsName) {
  char tmpl[] = "/tmp/thaw-webhook-ca-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ProcessResult r = RunProcess({THAW_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                dir + "/data", "--webhook-ca-file", dir + "/missing.pem"},
                               nullptr);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("webhook_ca_file " + dir + "/missing.pem"), std::string::npos)
      << r.out << r.err;
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing
