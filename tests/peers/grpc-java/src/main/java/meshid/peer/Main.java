package meshid.peer;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollEventLoopGroup;
import io.netty.channel.unix.DomainSocketAddress;
import io.spiffe.bundle.x509bundle.X509Bundle;
import io.spiffe.svid.x509svid.X509Svid;
import io.spiffe.svid.x509svid.X509SvidValidator;
import io.spiffe.workloadapi.DefaultWorkloadApiClient;
import io.spiffe.workloadapi.WorkloadApiClient;
import io.spiffe.workloadapi.X509Context;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A SPIFFE Workload API client on grpc-java, used by meshid's tests as an independent peer.
 *
 * <pre>
 * grpc-java-peer spiffe-fetch unix:/path/api.sock
 *     java-spiffe's DefaultWorkloadApiClient.fetchX509Context(). Prints, per SVID:
 *         svid ID chain N key ALGORITHM verified yes|error:...
 *     then per bundle "bundle TRUST_DOMAIN authorities N" and per authority
 *     "  authority sha256 HEX". Exit 0.
 *
 * grpc-java-peer raw-fetch /path/api.sock [--no-header]
 *     A plain grpc-netty call of /SpiffeWorkloadAPI/FetchX509SVID over epoll, with the
 *     "workload.spiffe.io: true" metadata unless --no-header, no authority override, and the
 *     first response decoded by hand. Prints "svid ID chain N x509_svid_der N key_der N
 *     bundle_der N hint H" per SVID and "crls N federated_bundles N". Exit 0.
 * </pre>
 *
 * <p>Any gRPC error is printed as "status CODE DESCRIPTION" (stdout) and exits 4; any other
 * failure prints the exception chain (stderr) and exits 1. Every mode gives up after
 * MESHID_PEER_TIMEOUT_SECS (default 30) and exits 3.
 */
public final class Main {
  private static final String METHOD = "SpiffeWorkloadAPI/FetchX509SVID";

  private Main() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: grpc-java-peer spiffe-fetch unix:/path | raw-fetch /path [--no-header]");
      System.exit(2);
    }
    startWatchdog();
    int code;
    try {
      switch (args[0]) {
        case "spiffe-fetch":
          code = spiffeFetch(args[1]);
          break;
        case "raw-fetch":
          code = rawFetch(args[1], !(args.length > 2 && args[2].equals("--no-header")));
          break;
        default:
          System.err.println("unknown mode " + args[0]);
          code = 2;
      }
    } catch (Throwable e) {
      code = report(e);
    }
    System.out.flush();
    System.exit(code);
  }

  /** Exits 3 after the deadline, whatever the client is blocked on. */
  private static void startWatchdog() {
    String env = System.getenv("MESHID_PEER_TIMEOUT_SECS");
    long secs = env == null ? 30 : Long.parseLong(env);
    Thread t =
        new Thread(
            () -> {
              try {
                Thread.sleep(TimeUnit.SECONDS.toMillis(secs));
              } catch (InterruptedException e) {
                return;
              }
              System.out.println("timeout after " + secs + "s");
              System.out.flush();
              Runtime.getRuntime().halt(3);
            });
    t.setDaemon(true);
    t.start();
  }

  /** Prints the status of the innermost gRPC error (exit 4), or the exception chain (exit 1). */
  private static int report(Throwable e) {
    for (Throwable c = e; c != null; c = c.getCause()) {
      System.err.println("caused by: " + c);
    }
    for (Throwable c = e; c != null; c = c.getCause()) {
      if (c instanceof StatusRuntimeException) {
        StatusRuntimeException s = (StatusRuntimeException) c;
        System.out.println(
            "status " + s.getStatus().getCode() + " " + s.getStatus().getDescription());
        return 4;
      }
    }
    return 1;
  }

  private static int spiffeFetch(String address) throws Exception {
    DefaultWorkloadApiClient.ClientOptions options =
        DefaultWorkloadApiClient.ClientOptions.builder().spiffeSocketPath(address).build();
    try (WorkloadApiClient client = DefaultWorkloadApiClient.newClient(options)) {
      X509Context context = client.fetchX509Context();
      for (X509Svid svid : context.getX509Svids()) {
        String verified = "yes";
        try {
          X509SvidValidator.verifyChain(svid.getChain(), context.getX509BundleSet());
        } catch (Exception e) {
          verified = "error:" + e.getMessage();
        }
        System.out.println(
            "svid "
                + svid.getSpiffeId()
                + " chain "
                + svid.getChain().size()
                + " key "
                + svid.getPrivateKey().getAlgorithm()
                + " verified "
                + verified);
      }
      for (X509Bundle bundle : context.getX509BundleSet().getBundles().values()) {
        System.out.println(
            "bundle "
                + bundle.getTrustDomain()
                + " authorities "
                + bundle.getX509Authorities().size());
        for (X509Certificate authority : bundle.getX509Authorities()) {
          System.out.println("  authority sha256 " + sha256(authority.getEncoded()));
        }
      }
    }
    return 0;
  }

  private static int rawFetch(String path, boolean header) throws Exception {
    EventLoopGroup group = new EpollEventLoopGroup(1);
    ManagedChannel channel =
        NettyChannelBuilder.forAddress(new DomainSocketAddress(path))
            .eventLoopGroup(group)
            .channelType(EpollDomainSocketChannel.class)
            .usePlaintext()
            .build();
    try {
      Channel target = channel;
      if (header) {
        Metadata metadata = new Metadata();
        metadata.put(Metadata.Key.of("workload.spiffe.io", Metadata.ASCII_STRING_MARSHALLER), "true");
        target = ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(metadata));
      }
      MethodDescriptor<byte[], byte[]> method =
          MethodDescriptor.<byte[], byte[]>newBuilder()
              .setType(MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(METHOD)
              .setRequestMarshaller(new Bytes())
              .setResponseMarshaller(new Bytes())
              .build();
      Iterator<byte[]> responses =
          ClientCalls.blockingServerStreamingCall(
              target, method, CallOptions.DEFAULT.withDeadlineAfter(20, TimeUnit.SECONDS), new byte[0]);
      try {
        if (!responses.hasNext()) {
          System.out.println("no response");
          return 1;
        }
        decodeResponse(responses.next());
      } catch (StatusRuntimeException e) {
        System.out.println("status " + e.getStatus().getCode() + " " + e.getStatus().getDescription());
        return 4;
      }
      return 0;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
    }
  }

  /** X509SVIDResponse: 1 repeated X509SVID, 2 repeated bytes crl, 3 map federated_bundles. */
  private static void decodeResponse(byte[] message) throws Exception {
    CodedInputStream in = CodedInputStream.newInstance(message);
    int crls = 0;
    int federated = 0;
    for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
      switch (tag) {
        case (1 << 3) | WireFormat.WIRETYPE_LENGTH_DELIMITED:
          decodeSvid(in.readByteArray());
          break;
        case (2 << 3) | WireFormat.WIRETYPE_LENGTH_DELIMITED:
          in.readBytes();
          crls++;
          break;
        case (3 << 3) | WireFormat.WIRETYPE_LENGTH_DELIMITED:
          in.readBytes();
          federated++;
          break;
        default:
          in.skipField(tag);
      }
    }
    System.out.println("crls " + crls + " federated_bundles " + federated);
  }

  /** X509SVID: 1 spiffe_id, 2 x509_svid (DER chain), 3 x509_svid_key (PKCS#8), 4 bundle, 5 hint. */
  private static void decodeSvid(byte[] message) throws Exception {
    CodedInputStream in = CodedInputStream.newInstance(message);
    String id = "";
    String hint = "";
    byte[] chain = new byte[0];
    byte[] key = new byte[0];
    byte[] bundle = new byte[0];
    for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
      switch (WireFormat.getTagFieldNumber(tag)) {
        case 1:
          id = in.readStringRequireUtf8();
          break;
        case 2:
          chain = in.readByteArray();
          break;
        case 3:
          key = in.readByteArray();
          break;
        case 4:
          bundle = in.readByteArray();
          break;
        case 5:
          hint = in.readStringRequireUtf8();
          break;
        default:
          in.skipField(tag);
      }
    }
    System.out.println(
        "svid "
            + id
            + " chain "
            + certificates(chain).size()
            + " x509_svid_der "
            + chain.length
            + " key_der "
            + key.length
            + " bundle_der "
            + bundle.length
            + " hint "
            + (hint.isEmpty() ? "-" : hint));
  }

  /** The certificates in concatenated DER. */
  private static List<X509Certificate> certificates(byte[] der) throws Exception {
    Collection<? extends java.security.cert.Certificate> certs =
        CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(der));
    List<X509Certificate> out = new ArrayList<>();
    for (java.security.cert.Certificate c : certs) {
      out.add((X509Certificate) c);
    }
    return out;
  }

  private static String sha256(byte[] data) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
  }

  /** Messages as their raw bytes: the request is the empty message, zero bytes. */
  private static final class Bytes implements MethodDescriptor.Marshaller<byte[]> {
    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }
  }
}
