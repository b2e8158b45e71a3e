//! The few rtnetlink requests the agent makes: list links, addresses and neighbours, look up
//! the route to an address, and hear of link changes.
//!
//! Everything runs in the calling thread's network namespace, which is how the agent looks at a
//! node or a pod namespace: it enters the namespace on a thread of its own first (`netns`).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// An interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index in its namespace.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// For a veth, the peer's index (in the peer's namespace); else 0.
    pub peer_index: u32,
    /// For a veth whose peer is in another namespace, that namespace's id as seen from here.
    pub peer_netnsid: Option<i32>,
    /// Its Ethernet address, when it has one.
    pub mac: Option<[u8; 6]>,
}

/// The links of this namespace.
pub fn links() -> io::Result<Vec<Link>> {
    let mut out = Vec::new();
    dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), |m| {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let mut link = Link {
                index: l.header.index,
                name: String::new(),
                peer_index: 0,
                peer_netnsid: None,
                mac: None,
            };
            for a in l.attributes {
                match a {
                    LinkAttribute::IfName(n) => link.name = n,
                    LinkAttribute::Link(p) => link.peer_index = p,
                    LinkAttribute::LinkNetNsId(id) => link.peer_netnsid = Some(id),
                    LinkAttribute::Address(a) => link.mac = a.try_into().ok(),
                    _ => {}
                }
            }
            out.push(link);
        }
    })?;
    Ok(out)
}

/// The addresses of this namespace, with the index of the link that holds each.
pub fn addresses() -> io::Result<Vec<(u32, IpAddr)>> {
    let mut out = Vec::new();
    dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                let index = a.header.index;
                // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
                // elsewhere.
                let mut addr = None;
                for attr in a.attributes {
                    match attr {
                        AddressAttribute::Local(ip) => addr = Some(ip),
                        AddressAttribute::Address(ip) if addr.is_none() => addr = Some(ip),
                        _ => {}
                    }
                }
                if let Some(ip) = addr {
                    out.push((index, ip));
                }
            }
        },
    )?;
    Ok(out)
}

/// The interface this namespace routes `ip` out of (`ip route get IP`); `None` when no route
/// leads anywhere (unreachable, blackhole) or the route has several next hops.
pub fn route_oif(ip: IpAddr) -> io::Result<Option<u32>> {
    use netlink_packet_route::route::{RouteAttribute, RouteMessage};
    use netlink_packet_route::AddressFamily;
    let mut m = RouteMessage::default();
    (m.header.address_family, m.header.destination_prefix_length) = match ip {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    m.attributes.push(RouteAttribute::Destination(ip.into()));
    let mut oif = None;
    let asked = exchange(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST, |m| {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            for a in r.attributes {
                if let RouteAttribute::Oif(i) = a {
                    oif = Some(i);
                }
            }
        }
    });
    match asked {
        Ok(()) => Ok(oif),
        // EHOSTUNREACH, ENETUNREACH, EINVAL (blackhole, prohibit): no interface leads there.
        Err(e) if matches!(e.raw_os_error(), Some(113) | Some(101) | Some(22)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One neighbour-table entry: an address's link-layer address on an interface, or, for a
/// bridge's forwarding database, which port of the bridge a MAC sits behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The interface (for a bridge FDB entry: the port).
    pub index: u32,
    /// The IP address (none in a bridge FDB entry).
    pub ip: Option<IpAddr>,
    /// Its Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// For a bridge FDB entry, the bridge.
    pub bridge: Option<u32>,
}

/// The neighbour tables: IPv4 and IPv6 neighbours (`ip neigh`) and bridges' forwarding
/// databases (`bridge fdb`).
pub fn neighbours() -> io::Result<Vec<Neighbour>> {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
    use netlink_packet_route::AddressFamily;
    let mut out = Vec::new();
    for family in [
        AddressFamily::Inet,
        AddressFamily::Inet6,
        AddressFamily::Bridge,
    ] {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        dump(RouteNetlinkMessage::GetNeighbour(m), |m| {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                let mut entry = Neighbour {
                    index: n.header.ifindex,
                    ip: None,
                    mac: None,
                    bridge: None,
                };
                for a in n.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                            entry.ip = Some(ip.into())
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                            entry.ip = Some(ip.into())
                        }
                        NeighbourAttribute::LinkLayerAddress(a) => entry.mac = a.try_into().ok(),
                        NeighbourAttribute::Controller(b) => entry.bridge = Some(b),
                        _ => {}
                    }
                }
                out.push(entry);
            }
        })?;
    }
    Ok(out)
}

/// The id this namespace gives the namespace open at `fd` (RTM_GETNSID); `None` if it has none
/// (no veth links the two).
pub fn nsid_of(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<i32>> {
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    use std::os::fd::AsRawFd;
    let mut m = NsidMessage::default();
    m.attributes.push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
    let mut id = None;
    exchange(RouteNetlinkMessage::GetNsId(m), NLM_F_REQUEST, |reply| {
        if let RouteNetlinkMessage::NewNsId(n) = reply {
            for a in n.attributes {
                if let NsidAttribute::Id(i) = a {
                    id = (i >= 0).then_some(i);
                }
            }
        }
    })?;
    Ok(id)
}

fn dump(request: RouteNetlinkMessage, each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
    exchange(request, NLM_F_DUMP | NLM_F_REQUEST, each)
}

/// Sends one request and hands each reply to `each`, until the end of a dump or a single answer.
fn exchange(
    request: RouteNetlinkMessage,
    flags: u16,
    mut each: impl FnMut(RouteNetlinkMessage),
) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(request));
    packet.header.flags = flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < bytes.len() {
            let msg: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&bytes[offset..]).map_err(|e| bad(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(e.to_io());
                }
                NetlinkPayload::InnerMessage(m) => {
                    each(m);
                    if flags & NLM_F_DUMP != NLM_F_DUMP {
                        return Ok(());
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// Link notifications (RTNLGRP_LINK): readable when an interface appears, changes or goes.
pub struct LinkEvents {
    socket: Socket,
}

/// The rtnetlink multicast group of link changes.
const RTNLGRP_LINK: u32 = 1;

impl LinkEvents {
    /// Subscribes in this namespace.
    pub fn subscribe() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, 1 << (RTNLGRP_LINK - 1)))?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket })
    }

    /// Reads every pending notification; whether there was any. A lost notification (buffer
    /// overrun) counts as a change too: the caller lists the links again either way.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return any,
                Err(_) => return true,
            }
        }
    }
}

impl AsFd for LinkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Removes the clsact qdisc of an interface (and every filter on it).
pub fn delete_clsact(index: u32) -> io::Result<()> {
    use netlink_packet_core::NLM_F_ACK;
    use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
    let mut m = TcMessage::with_index(index as i32);
    m.header.parent = TcHandle::from(0xFFFF_FFF1u32);
    m.header.handle = TcHandle::from(0xFFFF_0000u32);
    m.attributes.push(TcAttribute::Kind("clsact".to_string()));
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut packet = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::DelQueueDiscipline(m)),
    );
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let (bytes, _) = socket.recv_from_full()?;
    let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match msg.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        _ => Ok(()),
    }
}
