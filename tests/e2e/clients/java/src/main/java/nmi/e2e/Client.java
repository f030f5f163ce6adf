package nmi.e2e;

import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenCredential;
import com.azure.core.credential.TokenRequestContext;
import com.azure.identity.DefaultAzureCredentialBuilder;
import com.azure.identity.ManagedIdentityCredentialBuilder;
import com.azure.json.JsonProviders;
import com.azure.json.JsonReader;
import com.azure.json.JsonWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * nmi end-to-end client for Java: azure-identity asks IMDS (169.254.169.254, no endpoint override)
 * for a token and prints one JSON line with the decoded claims, never the token itself.
 *
 * <p>usage: java -jar nmi-e2e-client.jar --credential managed|default [--client-id ID] --resource
 * URL|SCOPE
 */
public final class Client {
  private Client() {}

  private static Object claimsOf(String token) throws Exception {
    String[] parts = token.split("\\.");
    if (parts.length != 3) {
      throw new IllegalStateException("the access token is not a JWT");
    }
    byte[] payload = Base64.getUrlDecoder().decode(parts[1].replace("=", ""));
    try (JsonReader reader = JsonProviders.createReader(payload)) {
      reader.nextToken();
      return reader.readUntyped();
    }
  }

  private static String sdkVersion() {
    Package p = DefaultAzureCredentialBuilder.class.getPackage();
    return p == null || p.getImplementationVersion() == null ? "" : p.getImplementationVersion();
  }

  public static void main(String[] argv) {
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("sdk", "java");
    long t0 = System.nanoTime();
    boolean ok = false;
    try {
      String credential = "";
      String clientId = "";
      String resource = "";
      for (int i = 0; i < argv.length; i++) {
        String a = argv[i];
        if (i + 1 >= argv.length) {
          throw new IllegalArgumentException(a + " needs a value");
        }
        switch (a) {
          case "--credential" -> credential = argv[++i];
          case "--client-id" -> clientId = argv[++i];
          case "--resource" -> resource = argv[++i];
          default -> throw new IllegalArgumentException("unknown argument " + a);
        }
      }
      out.put("credential", credential);
      out.put("version", sdkVersion());
      if (resource.isEmpty()) {
        throw new IllegalArgumentException("--resource is required");
      }
      String scope = resource.endsWith("/.default") ? resource : resource + "/.default";
      TokenCredential cred;
      if (credential.equals("managed")) {
        ManagedIdentityCredentialBuilder b = new ManagedIdentityCredentialBuilder();
        if (!clientId.isEmpty()) {
          b.clientId(clientId);
        }
        cred = b.build();
      } else if (credential.equals("default")) {
        DefaultAzureCredentialBuilder b = new DefaultAzureCredentialBuilder();
        if (!clientId.isEmpty()) {
          b.managedIdentityClientId(clientId);
        }
        cred = b.build();
      } else {
        throw new IllegalArgumentException("--credential must be managed or default");
      }
      AccessToken tok = cred.getTokenSync(new TokenRequestContext().addScopes(scope));
      out.put("ok", true);
      out.put("claims", claimsOf(tok.getToken()));
      out.put("expires_on", tok.getExpiresAt().toEpochSecond());
      ok = true;
    } catch (Throwable e) {
      out.put("ok", false);
      StringBuilder msg = new StringBuilder(e.getClass().getSimpleName() + ": " + e.getMessage());
      for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
        msg.append(" <- ").append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
      }
      out.put("error", msg.toString());
    }
    out.put("elapsed_ms", (System.nanoTime() - t0) / 1_000_000);
    StringWriter sw = new StringWriter();
    try (JsonWriter w = JsonProviders.createWriter(sw)) {
      w.writeUntyped(out);
    } catch (Exception e) {
      System.err.println("cannot write the result: " + e);
      System.exit(2);
    }
    System.out.println(sw);
    System.out.flush();
    // azure-core's and msal4j's worker threads must not keep the JVM alive.
    System.exit(ok ? 0 : 1);
  }
}
